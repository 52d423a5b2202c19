package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/payload/ptytest"
	"howett.net/plist"
)

const (
	sealClientID = "BUSINESSAPI.9703f56c-10ce-4876-8f59-e78e5e23a152"
	sealKeyID    = "d136aa66-0c3b-4bd4-9892-c20e8db024ab"
	sealPass     = "seal test passphrase 42"
)

type sealFixture struct {
	dir, key, pass, out, profile string
}

func newSealFixture(t *testing.T) sealFixture {
	t.Helper()
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	f := sealFixture{dir: dir, key: filepath.Join(dir, "AuthKey.p8"), pass: filepath.Join(dir, "pass"),
		out: filepath.Join(dir, "payload.plist"), profile: filepath.Join(dir, "rekey.mobileconfig")}
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	write(f.pass, []byte(sealPass+"\n"))
	return f
}

func (f sealFixture) args(extra ...string) []string {
	return append([]string{"seal", "--name", "Acme", "--client-id", sealClientID, "--key-id", sealKeyID,
		"--key", f.key, "--out", f.out, "--work-factor", "10"}, extra...)
}

// readPayload parses the written payload and decrypts its one entry.
func readPayload(t *testing.T, path string) (payload.Entry, *payload.Credential) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := payload.Parse(data)
	if err != nil || len(d.Entries) != 1 {
		t.Fatalf("parse %s: %v %+v", path, err, d)
	}
	c, err := payload.Decrypt(d.Entries[0].Ciphertext, []string{sealPass}, payload.DefaultWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	return d.Entries[0], c
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestSealWithPasswordFileWritesPayloadAndProfile(t *testing.T) {
	f := newSealFixture(t)
	code, out, errOut := runCLI(t, "", f.args("--password-file", f.pass, "--intent", "update", "--target", "Acme old",
		"--import-id", "acme-2026", "--mobileconfig", f.profile, "--domain", "com.example.rekey")...)
	if code != exitOK {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	if !strings.Contains(out, "ImportID acme-2026") || strings.Contains(out+errOut, sealPass) {
		t.Fatalf("stdout %q", out)
	}
	e, c := readPayload(t, f.out)
	if e.ImportID != "acme-2026" || e.Intent != "update" || e.Target != "Acme old" || c.ClientID != sealClientID || c.Scope != apple.ScopeBusiness {
		t.Fatalf("entry %+v credential %+v", e, c)
	}
	if mode(t, f.out) != 0o644 || mode(t, f.profile) != 0o644 {
		t.Fatalf("modes %v %v, want 0644 (files for MDM upload)", mode(t, f.out), mode(t, f.profile))
	}
	var prof struct {
		PayloadIdentifier string
		PayloadContent    []struct {
			PayloadType    string
			PayloadContent map[string]any
		}
	}
	data, _ := os.ReadFile(f.profile)
	if _, err := plist.Unmarshal(data, &prof); err != nil {
		t.Fatal(err)
	}
	if prof.PayloadIdentifier != "com.example.rekey.credentials" || prof.PayloadContent[0].PayloadType != "com.apple.ManagedClient.preferences" || prof.PayloadContent[0].PayloadContent["com.example.rekey"] == nil {
		t.Fatalf("profile %+v", prof)
	}
}

func TestSealPromptsTwiceOnTerminal(t *testing.T) {
	f := newSealFixture(t)
	for _, tt := range []struct {
		name, typed string
		code        int
		says        string
	}{
		{"same twice", sealPass + "\n" + sealPass + "\n", exitOK, "wrote"},
		{"differ", sealPass + "\nsomething else\n", exitFailure, "two passphrases differ"},
		{"empty", "\n\n", exitFailure, "passphrase is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ptmx, tty := ptytest.Terminal(t)
			if _, err := ptmx.Write([]byte(tt.typed)); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			env := &Env{Stdin: tty, Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
			code := Run(context.Background(), env, f.args())
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.says) {
				t.Fatalf("code %d, stdout %q, stderr %q", code, out.String(), errOut.String())
			}
			if !strings.Contains(errOut.String(), "Passphrase again: ") || strings.Contains(out.String()+errOut.String(), sealPass) {
				t.Fatalf("prompts or echo wrong: %q", errOut.String())
			}
			if tt.code == exitOK {
				readPayload(t, f.out)
			}
		})
	}
}

func TestSealRefusals(t *testing.T) {
	f := newSealFixture(t)
	loose := filepath.Join(f.dir, "loose")
	os.WriteFile(loose, []byte(sealPass), 0o644)
	os.Chmod(loose, 0o644)
	rsaKey := filepath.Join(f.dir, "rsa.pem")
	os.WriteFile(rsaKey, []byte("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no terminal, no password file", f.args(), exitUsage, "use --password-file"},
		{"missing key id", []string{"seal", "--name", "A", "--client-id", sealClientID, "--key", f.key, "--out", f.out}, exitUsage, "--key-id is required"},
		{"bad intent", f.args("--intent", "replace"), exitUsage, "is not add, update or auto"},
		{"target with add", f.args("--intent", "add", "--target", "x"), exitUsage, "only for update or auto"},
		{"work factor too high", f.args("--work-factor", "21"), exitUsage, "outside 10..20"},
		{"bad domain", f.args("--domain", "nodots"), exitUsage, "reverse-DNS"},
		{"stray argument", f.args("extra"), exitUsage, "no arguments"},
		{"bad client id", f.args("--client-id", "SCHOOLAPI.123", "--password-file", f.pass), exitFailure, "not a UUID"},
		{"bad key id", f.args("--key-id", "nope", "--password-file", f.pass), exitFailure, "key ID is not a UUID"},
		{"rsa key", f.args("--key", rsaKey, "--password-file", f.pass), exitFailure, "not an EC key"},
		{"missing key file", f.args("--key", filepath.Join(f.dir, "none"), "--password-file", f.pass), exitFailure, "no such file"},
		{"password file readable by others", f.args("--password-file", loose), exitFailure, "chmod 600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, "", tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.says) {
				t.Fatalf("code %d, stderr %q; want %d saying %q", code, errOut, tt.code, tt.says)
			}
			if strings.Contains(errOut, sealPass) {
				t.Fatal("stderr holds the passphrase")
			}
			if _, err := os.Stat(f.out); err == nil {
				t.Fatal("payload written despite the error")
			}
		})
	}
}

// TestInteropSealDecryptsWithAge: the payload's EncryptedCredential is a
// plain age file that the Debian age tool opens with the same passphrase.
func TestInteropSealDecryptsWithAge(t *testing.T) {
	if testing.Short() {
		t.Skip("interop test with age skipped in -short mode")
	}
	age, err := exec.LookPath("age")
	if err != nil {
		t.Fatal("age is needed for this interop test; install it: apt-get install -y age")
	}
	f := newSealFixture(t)
	if code, _, errOut := runCLI(t, "", f.args("--password-file", f.pass)...); code != exitOK {
		t.Fatalf("seal: %s", errOut)
	}
	e, _ := readPayload(t, f.out)
	armored := filepath.Join(f.dir, "cred.age")
	plain := filepath.Join(f.dir, "cred.plist")
	os.WriteFile(armored, e.Ciphertext, 0o600)
	transcript, err := ptytest.Run(t, exec.Command(age, "-d", "-o", plain, armored),
		ptytest.Step{Expect: "passphrase", Send: sealPass + "\n"})
	if err != nil {
		t.Fatalf("age -d: %v\n%s", err, transcript)
	}
	var cred map[string]string
	data, _ := os.ReadFile(plain)
	if _, err := plist.Unmarshal(data, &cred); err != nil {
		t.Fatal(err)
	}
	if cred["ClientID"] != sealClientID || cred["KeyID"] != sealKeyID || cred["Scope"] != "business.api" ||
		!strings.HasPrefix(cred["PrivateKey"], "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("age -d gave %v", cred)
	}
}

func TestSealVerifyRefusesAKeyAppleRejects(t *testing.T) {
	f := newSealFixture(t)
	fake := appletest.New()
	t.Cleanup(fake.Close)
	code, _, errOut := runCLI(t, "", f.args("--password-file", f.pass, "--verify", "--token-url", fake.TokenURL())...)
	if code != exitFailure || !strings.Contains(errOut, "rejected") || !strings.Contains(errOut, "invalid_client") {
		t.Fatalf("seal --verify of an unknown key: exit %d, stderr %q; want 1 with Apple's reason", code, errOut)
	}
	if _, err := os.Stat(f.out); !os.IsNotExist(err) {
		t.Fatalf("a rejected key was sealed into %s (%v)", f.out, err)
	}
	raw, _ := os.ReadFile(f.key)
	block, _ := pem.Decode(raw)
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fake.RegisterCredential(sealClientID, sealKeyID, &k.PublicKey)
	code, out, errOut := runCLI(t, "", f.args("--password-file", f.pass, "--verify", "--token-url", fake.TokenURL())...)
	if code != exitOK || !strings.Contains(errOut, "verified") || !strings.Contains(out, "wrote "+f.out) {
		t.Fatalf("seal --verify of a key Apple knows: exit %d, out %q, err %q", code, out, errOut)
	}
	if fake.Stats().TokensIssued != 1 {
		t.Fatalf("the fake issued %d tokens, want 1", fake.Stats().TokensIssued)
	}
	if code, _, _ := runCLI(t, "", f.args("--password-file", f.pass, "--verify", "--token-url", "http://example.com/token")...); code != exitUsage {
		t.Fatalf("--token-url over plain http off localhost: exit %d, want %d", code, exitUsage)
	}
}
