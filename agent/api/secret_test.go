package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestSecretJSONRoundTrips(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pw := rapid.String().Draw(t, "password")
		enc := Secret(pw).AppendJSON(nil)
		var viaStd string
		if err := json.Unmarshal(enc, &viaStd); err != nil || viaStd != pw {
			t.Fatalf("encoding/json reads %q back as %q (%v)", pw, viaStd, err)
		}
		var req UnlockRequest
		body := append(append([]byte(`{"password":`), enc...), '}')
		if err := json.Unmarshal(body, &req); err != nil || string(req.Password) != pw {
			t.Fatalf("UnlockRequest reads %q back as %q (%v)", pw, req.Password, err)
		}
	})
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2")
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), fmt.Sprintf("%+v", UnlockRequest{Password: s})} {
		if out == "" || strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %q", out)
		}
	}
	s.Wipe()
	if string(s) != "\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("wipe left %q", s)
	}
}

func TestSecretRejectsNonStrings(t *testing.T) {
	var req UnlockRequest
	if err := json.Unmarshal([]byte(`{"password": 12}`), &req); err == nil {
		t.Fatal("a number was accepted as a password")
	}
}

func TestSecretDecodesEveryEscapeEncodingJSONWrites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "secret")
		enc, _ := json.Marshal(s) // escapes <, >, &, U+2028 as \uXXXX, control characters, quotes
		var got Secret
		if err := json.Unmarshal(enc, &got); err != nil || string(got) != s {
			t.Fatalf("Secret reads %s back as %q (%v), want %q", enc, got, err, s)
		}
	})
	var pair Secret
	if err := json.Unmarshal([]byte(`"\ud83d\udd11\n\/"`), &pair); err != nil || string(pair) != "🔑\n/" {
		t.Fatalf("surrogate pair: %q, %v", pair, err)
	}
	for _, bad := range []string{`"\x"`, `"\u12"`, `"a\"`, "\"\x01\""} {
		var s Secret
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s was accepted as a secret", bad)
		}
	}
}

func TestReadSecretBodyReadsWholeBodiesIntoOneBuffer(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096, MaxBodyBytes} {
		body := bytes.Repeat([]byte{'k'}, n)
		got, err := readSecretBody(bytes.NewReader(body))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: got %d bytes, err %v", n, len(got), err)
		}
		// One buffer allocated up front: a body of any size lands in it
		// without the regrowth that leaves partial copies behind.
		if cap(got) != MaxBodyBytes+1 {
			t.Fatalf("%d bytes: buffer capacity %d, want the one up-front buffer of %d", n, cap(got), MaxBodyBytes+1)
		}
	}
}

func TestReadSecretBodyRefusesOversizedBodies(t *testing.T) {
	body := bytes.Repeat([]byte{'k'}, MaxBodyBytes+10)
	if got, err := readSecretBody(bytes.NewReader(body)); err == nil || got != nil || !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized body: got %d bytes, err %v", len(got), err)
	}
}
