package payload

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"howett.net/plist"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var (
	armorRe = regexp.MustCompile(`(?s)-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----\n?`)
	uuidAny = regexp.MustCompile(`[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}`)
)

// normalise replaces what differs on every run: ciphertext and UUIDs.
func normalise(b []byte) []byte {
	b = armorRe.ReplaceAll(b, []byte("<CIPHERTEXT>"))
	return uuidAny.ReplaceAll(b, []byte("<UUID>"))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs from golden file:\n%s", name, got)
	}
}

func sealedEntries(t *testing.T) []PayloadEntry {
	ct := sealed(t, newKeyPEM(t))
	return []PayloadEntry{
		{Name: "Acme Business", Ciphertext: ct},
		{ImportID: "acme-2026-11", Intent: IntentUpdate, Target: "Acme Business", Name: "Acme Business (new key)", Ciphertext: ct},
	}
}

func TestMarshalPayloadGoldenAndParses(t *testing.T) {
	entries := sealedEntries(t)
	out, err := MarshalPayload(entries, map[string]string{KeyAuthCheck: AuthRequired})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "payload.plist", normalise(out))
	d, err := Parse(out)
	if err != nil || len(d.Entries) != 2 || len(d.Problems) != 0 || d.Settings.AuthCheck != AuthRequired {
		t.Fatalf("written payload does not parse back: %v %+v", err, d)
	}
	c, err := Decrypt(d.Entries[1].Ciphertext, []string{testPass}, DefaultWorkFactor)
	if err != nil || c.Name != "Acme" {
		t.Fatalf("decrypt: %v", err)
	}
}

func TestMarshalProfileGolden(t *testing.T) {
	prefs := PreferenceSettings(sealedEntries(t)[:1], nil)
	out, err := MarshalProfile(Profile{Domain: "com.github.rekeyd.rekey", Organization: "Acme", Preferences: prefs})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "profile.mobileconfig", normalise(out))
	again, _ := MarshalProfile(Profile{Domain: "com.github.rekeyd.rekey", Preferences: prefs})
	if u1, u2 := uuidAny.FindAll(out, -1), uuidAny.FindAll(again, -1); len(u1) != 2 || string(u1[0]) == string(u2[0]) {
		t.Fatalf("PayloadUUIDs not fresh: %s / %s", u1, u2)
	}
	// The managed preferences inside the profile are a valid payload.
	var p struct {
		PayloadContent []struct {
			PayloadContent map[string]struct {
				Forced []struct {
					Settings map[string]any `plist:"mcx_preference_settings"`
				}
			}
		}
	}
	if _, err := plist.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	inner, _ := plist.Marshal(p.PayloadContent[0].PayloadContent["com.github.rekeyd.rekey"].Forced[0].Settings, plist.BinaryFormat)
	if d, err := Parse(inner); err != nil || len(d.Entries) != 1 {
		t.Fatalf("profile content does not parse: %v", err)
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	key := newKeyPEM(t)
	good := SealInput{Name: "A", ClientID: testClientID, KeyID: testKeyID, KeyPEM: key}
	tests := []struct {
		name string
		edit func(*SealInput)
		want error
		says string
	}{
		{"empty name", func(s *SealInput) { s.Name = "" }, ErrBadCredential, "name"},
		{"bad client id", func(s *SealInput) { s.ClientID = "BUSINESSAPI.x" }, ErrBadCredential, "not a UUID"},
		{"bad key id", func(s *SealInput) { s.KeyID = "123" }, ErrBadCredential, "key ID"},
		{"rsa key", func(s *SealInput) {
			s.KeyPEM = []byte("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n")
		}, ErrKeyType, "RSA"},
	}
	for _, tt := range tests {
		in := good
		tt.edit(&in)
		if _, err := Seal(in, testPass, testWF); !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
			t.Fatalf("%s: %v", tt.name, err)
		}
	}
	for _, wf := range []int{MinWorkFactor - 1, MaxWorkFactorLimit + 1} {
		if _, err := Seal(good, testPass, wf); err == nil {
			t.Fatalf("work factor %d accepted", wf)
		}
	}
	if _, err := Seal(good, "", testWF); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}

func TestMarshalPayloadKeepsLiteralEntityText(t *testing.T) {
	ct := sealed(t, newKeyPEM(t))
	out, err := MarshalPayload([]PayloadEntry{{Name: "a&#xA;b <c>", Ciphertext: ct}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(out)
	if err != nil || len(d.Entries) != 1 || d.Entries[0].Name != "a&#xA;b <c>" || string(d.Entries[0].Ciphertext) != string(ct) {
		t.Fatalf("round trip: %v %+v", err, d)
	}
}
