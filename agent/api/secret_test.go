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
