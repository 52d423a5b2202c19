package payload

import (
	"errors"
	"testing"

	"howett.net/plist"
)

// Fuzz targets: no input may panic, hang or allocate without bound, and every
// refusal wraps a documented sentinel.

func FuzzParse(f *testing.F) {
	ct := sealed(f, newKeyPEM(f))
	good := doc(entry("Acme", string(ct)), entry("B", []byte("age-encryption.org/v1\n"), KeyImportID, "b", KeyIntent, IntentUpdate))
	good[KeySettings] = map[string]any{KeyAuthCheck: AuthOff, KeySyncInterval: "1h"}
	f.Add(marshal(f, good, plist.XMLFormat))
	f.Add(marshal(f, good, plist.BinaryFormat))
	f.Add(marshal(f, doc(entry("A", "x"), "y", entry("A", string(ct), KeyImportID, "d"), entry("A", string(ct), KeyImportID, "d")), plist.BinaryFormat))
	f.Add([]byte(`<plist><dict><key>Credentials</key><array><dict><key>PrivateKey</key><string>x</string></dict></array></dict></plist>`))
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidDocument) && !errors.Is(err, ErrPlaintextKey) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range d.Entries {
			if e.ImportID == "" || e.Hash == "" || seen[e.ImportID] || len(e.Ciphertext) == 0 ||
				(e.Intent != IntentAdd && e.Intent != IntentUpdate && e.Intent != IntentAuto) {
				t.Fatalf("invalid entry accepted: %+v", e)
			}
			seen[e.ImportID] = true
		}
		for _, p := range d.Problems {
			if p.Fix == "" || p.Problem == "" {
				t.Fatalf("problem without fix: %+v", p)
			}
		}
	})
}

func FuzzDecrypt(f *testing.F) {
	key := newKeyPEM(f)
	armored := sealed(f, key)
	bin, _ := dearmor(armored)
	f.Add(armored)
	f.Add(bin)
	f.Add(encryptRaw(f, []byte("not a plist"), testWF))
	f.Add(overCap(f, "30"))
	f.Add([]byte("age-encryption.org/v1\n-> X25519 abc\nAAAA\n--- AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Cap at the seeds' factor so that no fuzzed header costs more than one cheap derivation.
		c, err := Decrypt(data, []string{testPass}, testWF)
		if err == nil {
			if c.Key == nil || c.Scope == "" {
				t.Fatalf("incomplete credential accepted: %+v", c)
			}
			c.Wipe()
			return
		}
		for _, s := range []error{ErrNotAge, ErrNotPassphrase, ErrWorkFactor, ErrWrongPassphrase, ErrBadCredential} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("undocumented error: %v", err)
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	f.Add(newKeyPEM(f))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, text []byte) {
		k, err := ParsePrivateKey(text)
		if err == nil {
			if k.Curve.Params().Name != "P-256" {
				t.Fatalf("accepted curve %s", k.Curve.Params().Name)
			}
			return
		}
		for _, s := range []error{ErrKeyEmpty, ErrKeyNotPEM, ErrKeyEncrypted, ErrKeyType, ErrKeyCurve} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("undocumented error: %v", err)
	})
}
