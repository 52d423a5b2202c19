package api

import (
	"encoding/json"
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
