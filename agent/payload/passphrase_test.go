package payload

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/platform"
)

func passFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func ownRule() platform.TrustRule { return platform.TrustRule{Owners: []int{os.Geteuid()}} }

func TestReadPassphrases(t *testing.T) {
	p := passFile(t, "first one\r\n\n  \nsecond  two \nthird", 0o600)
	got, err := ReadPassphrases(p, ownRule())
	want := []string{"first one", "second  two ", "third"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReadPassphrasesRefusals(t *testing.T) {
	secret := "hunter2-very-secret"
	tests := []struct {
		name string
		path string
		want error
	}{
		{"group readable", passFile(t, secret, 0o640), platform.ErrUntrusted},
		{"world readable", passFile(t, secret, 0o644), platform.ErrUntrusted},
		{"only blank lines", passFile(t, "\n \r\n", 0o600), ErrNoPassphrases},
		{"missing", filepath.Join(t.TempDir(), "none"), fs.ErrNotExist},
		{"too large", passFile(t, strings.Repeat("x", 64<<10+1), 0o600), platform.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPassphrases(tt.path, ownRule())
			if got != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %q, %v; want %v", got, err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error holds the passphrase: %v", err)
			}
			if !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "fix:") {
				t.Fatalf("no fix in %v", err)
			}
		})
	}
}
