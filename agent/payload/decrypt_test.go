package payload

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/rekeyd/rekey/agent/apple"
)

func TestDecryptSealedCredential(t *testing.T) {
	key := newKeyPEM(t)
	armored := sealed(t, key)
	bin, err := dearmor(armored)
	if err != nil {
		t.Fatal(err)
	}
	// Armor pasted into a plist with indentation and CRLF still opens.
	indented := regexp.MustCompile(`(?m)^`).ReplaceAll(bytes.ReplaceAll(armored, []byte("\n"), []byte("\r\n")), []byte("\t\t"))
	for name, ct := range map[string][]byte{"armored": armored, "binary": bin, "indented": indented} {
		t.Run(name, func(t *testing.T) {
			c, err := Decrypt(ct, []string{"wrong one", testPass}, DefaultWorkFactor)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ParsePrivateKey(key)
			if c.ClientID != testClientID || c.KeyID != testKeyID || c.Scope != apple.ScopeBusiness || c.Name != "Acme" || !c.Key.Equal(want) {
				t.Fatalf("credential %+v", c)
			}
			if !bytes.HasPrefix(c.PEM, []byte("-----BEGIN PRIVATE KEY-----")) {
				t.Fatalf("PEM not normalised to PKCS#8: %.30s", c.PEM)
			}
			pemBuf, plain := c.PEM, c.plain
			c.Wipe()
			if c.PEM != nil || c.Key != nil || !allZero(pemBuf) || !allZero(plain) {
				t.Fatal("Wipe left key material behind")
			}
		})
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return len(b) > 0
}

func TestDecryptRefusals(t *testing.T) {
	key := newKeyPEM(t)
	good := sealed(t, key)
	x, _ := age.GenerateX25519Identity()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalECPrivateKey(p384)
	p384pem := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384der}))
	cred := func(kv ...string) []byte {
		m := map[string]any{KeyClientID: testClientID, KeyKeyID: testKeyID, KeyPrivateKey: string(key)}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
				continue
			}
			m[kv[i]] = kv[i+1]
		}
		return encryptPlist(t, m)
	}
	tests := []struct {
		name  string
		ct    []byte
		pass  []string
		want  error
		want2 error
		says  string
	}{
		{"wrong passphrase", good, []string{"nope", "also nope"}, ErrWrongPassphrase, nil, "tried 2 passphrase"},
		{"no passphrase", good, nil, ErrWrongPassphrase, nil, "no passphrase is configured"},
		{"not age", []byte("hello"), []string{testPass}, ErrNotAge, nil, "starts with neither"},
		{"damaged armor", bytes.Replace(good, []byte("\n"), []byte("\n!"), 2), []string{testPass}, ErrNotAge, nil, "armor is damaged"},
		{"truncated", good[:len(good)/2], []string{testPass}, ErrNotAge, nil, "damaged"},
		{"x25519 recipient", encryptTo(t, []byte("x"), x.Recipient()), []string{testPass}, ErrNotPassphrase, nil, "encrypted to X25519"},
		{"plaintext not a plist", encryptRaw(t, []byte("just text"), testWF), []string{testPass}, ErrBadCredential, nil, "not a plist"},
		{"scope disagrees", cred(KeyScope, apple.ScopeSchool), []string{testPass}, ErrBadCredential, nil, "disagrees"},
		{"school client id", cred(KeyClientID, "SCHOOLAPI.nope"), []string{testPass}, ErrBadCredential, nil, "not a UUID"},
		{"bad client id", cred(KeyClientID, "CLIENT.9703f56c-10ce-4876-8f59-e78e5e23a152"), []string{testPass}, ErrBadCredential, nil, "does not start with"},
		{"missing key id", cred(KeyKeyID, ""), []string{testPass}, ErrBadCredential, nil, "key ID is not a UUID"},
		{"missing private key", cred(KeyPrivateKey, ""), []string{testPass}, ErrBadCredential, ErrKeyEmpty, "empty"},
		{"p384 key", cred(KeyPrivateKey, p384pem), []string{testPass}, ErrBadCredential, ErrKeyCurve, "P-384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decrypt(tt.ct, tt.pass, DefaultWorkFactor)
			if c != nil || !errors.Is(err, tt.want) || (tt.want2 != nil && !errors.Is(err, tt.want2)) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v; want %v (%v) saying %q", err, tt.want, tt.want2, tt.says)
			}
			if !strings.Contains(err.Error(), "fix:") {
				t.Fatalf("error has no fix: %v", err)
			}
			assertNoSecret(t, err, tt.pass, key, tt.ct)
		})
	}
}

// assertNoSecret fails if err quotes a passphrase, key text or ciphertext.
func assertNoSecret(t *testing.T, err error, passes []string, key, ct []byte) {
	t.Helper()
	msg := err.Error()
	for _, p := range passes {
		if strings.Contains(msg, p) {
			t.Fatalf("error holds a passphrase: %v", msg)
		}
	}
	for _, secret := range [][]byte{key, ct} {
		for _, line := range bytes.Split(secret, []byte("\n")) {
			if len(line) >= 16 && !bytes.HasPrefix(line, []byte("-----")) && strings.Contains(msg, string(line[:16])) {
				t.Fatalf("error holds secret bytes: %v", msg)
			}
		}
	}
}

// overCap rewrites the work factor of a sealed file to logN without touching
// anything else: the header MAC no longer matches, but the factor is read first.
func overCap(t testing.TB, logN string) []byte {
	t.Helper()
	bin := encryptRaw(t, []byte("x"), testWF)
	out := regexp.MustCompile(`(-> scrypt \S+) 10\n`).ReplaceAll(bin, []byte("${1} "+logN+"\n"))
	if bytes.Equal(out, bin) {
		t.Fatal("work factor not found in header")
	}
	return out
}

func TestDecryptRefusesWorkFactorAboveCapBeforeDerivingAKey(t *testing.T) {
	// 2^30 scrypt would need a terabyte: finishing at all shows no derivation ran.
	for _, tt := range []struct {
		logN string
		cap  int
	}{{"30", DefaultWorkFactor}, {"19", DefaultWorkFactor}, {"21", MaxWorkFactorLimit}, {"11", 10}} {
		_, err := Decrypt(overCap(t, tt.logN), []string{testPass}, tt.cap)
		if !errors.Is(err, ErrWorkFactor) || !strings.Contains(err.Error(), "work factor "+tt.logN) {
			t.Fatalf("logN %s cap %d: %v", tt.logN, tt.cap, err)
		}
	}
	// age's own check (SetMaxWorkFactor) also runs before scrypt.Key.
	id, _ := age.NewScryptIdentity(testPass)
	id.SetMaxWorkFactor(DefaultWorkFactor)
	if _, err := age.Decrypt(bytes.NewReader(overCap(t, "30")), id); err == nil || !strings.Contains(err.Error(), "work factor too large") {
		t.Fatalf("age with a cap: %v", err)
	}
}

func TestDecryptWorkFactorCapIsValidated(t *testing.T) {
	for _, cap := range []int{0, MaxWorkFactorLimit + 1} {
		if _, err := Decrypt(sealed(t, newKeyPEM(t)), []string{testPass}, cap); err == nil {
			t.Fatalf("cap %d accepted", cap)
		}
	}
}

func TestScryptWorkFactorReadsHeaderOnly(t *testing.T) {
	n, err := ScryptWorkFactor(overCap(t, "25"))
	if err != nil || n != 25 {
		t.Fatalf("got %d, %v", n, err)
	}
	if _, err := ScryptWorkFactor(overCap(t, "99999999999999999999")); !errors.Is(err, ErrNotAge) {
		t.Fatalf("absurd factor: %v", err)
	}
}

func TestWorkFactorReadsArmoredAndBinaryHeaders(t *testing.T) {
	if n, err := WorkFactor(sealed(t, newKeyPEM(t))); err != nil || n != testWF {
		t.Fatalf("armored: %d, %v; want %d", n, err, testWF)
	}
	if n, err := WorkFactor(overCap(t, "17")); err != nil || n != 17 {
		t.Fatalf("binary: %d, %v; want 17", n, err)
	}
	if _, err := WorkFactor([]byte("-----BEGIN AGE ENCRYPTED FILE-----\nnot base64\n-----END AGE ENCRYPTED FILE-----\n")); !errors.Is(err, ErrNotAge) {
		t.Fatalf("damaged armor: %v, want ErrNotAge", err)
	}
}

func TestDecryptBinaryEndingInWhitespaceByte(t *testing.T) {
	// Binary age is taken byte for byte; trimming it as text once broke files
	// whose last byte happened to be a space or newline.
	for i := 0; i < 2000; i++ {
		ct := encryptPlist(t, map[string]any{KeyClientID: testClientID, KeyKeyID: testKeyID, KeyPrivateKey: string(newKeyPEM(t))})
		if last := ct[len(ct)-1]; last != ' ' && last != '\n' && last != '\t' && last != '\r' {
			continue
		}
		if _, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no ciphertext ending in whitespace produced")
}
