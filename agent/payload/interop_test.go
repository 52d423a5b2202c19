package payload

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload/ptytest"
	"howett.net/plist"
)

// tool returns the path of an external program the interop tests need. A
// missing tool fails the test (skipped only under -short).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("interop test with %s skipped in -short mode", name)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed for this interop test; install it: apt-get install -y %s", name, pkg)
	}
	return p
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ageEncryptWithPassphrase runs the Debian age tool as an admin would:
// 'age -p [-a] -o OUT IN', typing the passphrase on its terminal.
func ageEncryptWithPassphrase(t *testing.T, plain []byte, armor bool) []byte {
	t.Helper()
	age := tool(t, "age", "age")
	in := writeTemp(t, "cred.plist", plain)
	out := filepath.Join(t.TempDir(), "cred.age")
	args := []string{"-p", "-o", out, in}
	if armor {
		args = append([]string{"-a"}, args...)
	}
	transcript, err := ptytest.Run(t, exec.Command(age, args...),
		ptytest.Step{Expect: "passphrase", Send: testPass + "\n"},
		ptytest.Step{Expect: "onfirm", Send: testPass + "\n"},
	)
	if err != nil {
		t.Fatalf("age -p: %v\n%s", err, transcript)
	}
	ct, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestInteropAgePassphraseFileDecrypts(t *testing.T) {
	key := newKeyPEM(t)
	plain := marshal(t, map[string]any{KeyClientID: "SCHOOLAPI.0b8f7c2e-1d2a-4e8f-9c3b-5a6d7e8f9a0b", KeyKeyID: testKeyID,
		KeyPrivateKey: string(key), KeyCredentialName: "District"}, plist.XMLFormat)
	for _, armor := range []bool{true, false} {
		ct := ageEncryptWithPassphrase(t, plain, armor)
		c, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor)
		if err != nil {
			t.Fatalf("armor %v: %v", armor, err)
		}
		if c.Scope != apple.ScopeSchool || c.Name != "District" || c.KeyID != testKeyID {
			t.Fatalf("credential %+v", c)
		}
		// The same file inside a payload, as data or as a string.
		var v any = ct
		if armor {
			v = string(ct)
		}
		d, err := Parse(marshal(t, doc(entry("District", v)), plist.BinaryFormat))
		if err != nil || len(d.Entries) != 1 {
			t.Fatalf("parse: %v %+v", err, d)
		}
	}
}

func TestInteropPythonPlistlib(t *testing.T) {
	py := tool(t, "python3", "python3")
	ct := sealed(t, newKeyPEM(t))
	bin, err := dearmor(ct)
	if err != nil {
		t.Fatal(err)
	}
	ctFile, binFile := writeTemp(t, "ct.txt", ct), writeTemp(t, "ct.bin", bin)
	script := `
import plistlib, sys
fmt = plistlib.FMT_BINARY if sys.argv[1] == "binary" else plistlib.FMT_XML
doc = {"Credentials": [
    {"CredentialName": "Acme", "EncryptedCredential": open(sys.argv[2]).read(), "Intent": "add"},
    {"CredentialName": "Beta", "EncryptedCredential": open(sys.argv[3], "rb").read(), "ImportID": "beta-1"},
], "Settings": {"AuthCheck": "off", "SyncInterval": "6h"}}
sys.stdout.buffer.write(plistlib.dumps(doc, fmt=fmt))
`
	for _, format := range []string{"xml", "binary"} {
		out, err := exec.Command(py, "-c", script, format, ctFile, binFile).Output()
		if err != nil {
			t.Fatalf("python3 %s: %v", format, err)
		}
		d, err := Parse(out)
		if err != nil || len(d.Entries) != 2 || len(d.Problems) != 0 || d.Settings.AuthCheck != AuthOff || d.Settings.SyncInterval.Hours() != 6 {
			t.Fatalf("%s: %v %+v", format, err, d)
		}
		for _, e := range d.Entries {
			if _, err := Decrypt(e.Ciphertext, []string{testPass}, DefaultWorkFactor); err != nil {
				t.Fatalf("%s entry %s: %v", format, e.Name, err)
			}
		}
	}
}

// openssl runs openssl with args in dir and returns the file it wrote.
func openssl(t *testing.T, dir, out string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tool(t, "openssl", "openssl"), args...)
	cmd.Dir = dir
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	b, err := os.ReadFile(filepath.Join(dir, out))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInteropOpenSSLKeys(t *testing.T) {
	dir := t.TempDir()
	sec1 := openssl(t, dir, "sec1.pem", "ecparam", "-genkey", "-name", "prime256v1", "-out", "sec1.pem")
	p8 := openssl(t, dir, "p8.pem", "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "p8.pem")
	p8ec := []byte(strings.ReplaceAll(string(p8), "PRIVATE KEY", "EC PRIVATE KEY"))
	accepted := map[string][]byte{"SEC1 (with EC PARAMETERS)": sec1, "PKCS#8": p8, "PKCS#8 under EC PRIVATE KEY": p8ec}
	var first []byte
	for name, text := range accepted {
		k, err := ParsePrivateKey(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		norm, _ := EncodePKCS8(k)
		if first == nil {
			first = norm
		} else if string(norm) != string(first) {
			t.Fatalf("%s: a different key than the others", name)
		}
	}
	refused := []struct {
		name string
		text []byte
		want error
	}{
		{"RSA", openssl(t, dir, "rsa.pem", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"), ErrKeyType},
		{"RSA traditional", openssl(t, dir, "rsa1.pem", "rsa", "-in", "rsa.pem", "-traditional", "-out", "rsa1.pem"), ErrKeyType},
		{"P-384", openssl(t, dir, "p384.pem", "ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", "p384.pem"), ErrKeyCurve},
		{"secp256k1", openssl(t, dir, "k1.pem", "ecparam", "-genkey", "-name", "secp256k1", "-noout", "-out", "k1.pem"), ErrKeyCurve},
		{"Ed25519", openssl(t, dir, "ed.pem", "genpkey", "-algorithm", "ed25519", "-out", "ed.pem"), ErrKeyType},
		{"encrypted PKCS#8", openssl(t, dir, "enc.pem", "pkcs8", "-topk8", "-in", "sec1.pem", "-passout", "pass:secret-pass", "-out", "enc.pem"), ErrKeyEncrypted},
		{"encrypted traditional", openssl(t, dir, "enc1.pem", "ec", "-in", "sec1.pem", "-aes128", "-passout", "pass:secret-pass", "-out", "enc1.pem"), ErrKeyEncrypted},
	}
	for _, tt := range refused {
		if _, err := ParsePrivateKey(tt.text); !errors.Is(err, tt.want) {
			t.Fatalf("%s: got %v, want %v", tt.name, err, tt.want)
		} else {
			assertNoSecret(t, err, []string{"secret-pass"}, tt.text, nil)
		}
	}
}
