//go:build unix

package platform

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const foreignUID = 65534 // nobody

// trustDir makes a folder that passes the default rule: owned by us, 0755.
func trustDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "managed")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path string, data string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files to a foreign uid and must run as root (the CI container does)")
	}
}

func rule() TrustRule {
	return TrustRule{Owners: []int{os.Geteuid()}, MaxSize: 64}
}

func wantUntrusted(t *testing.T, err error, problem string) {
	t.Helper()
	var te *TrustError
	if !errors.Is(err, ErrUntrusted) || !errors.As(err, &te) {
		t.Fatalf("want a TrustError, got %v", err)
	}
	if !strings.Contains(te.Problem, problem) || te.Fix == "" {
		t.Fatalf("problem %q (fix %q), want it to mention %q", te.Problem, te.Fix, problem)
	}
}

func TestReadTrustedAcceptsGoodFile(t *testing.T) {
	p := writeFile(t, filepath.Join(trustDir(t), "a.plist"), "hello", 0o644)
	got, err := ReadTrusted(p, rule())
	if err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReadTrustedMissingFileIsNotExist(t *testing.T) {
	dir := trustDir(t)
	_, err := ReadTrusted(filepath.Join(dir, "none.plist"), rule())
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrUntrusted) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
	link := filepath.Join(dir, "dangling.plist")
	if err := os.Symlink(filepath.Join(dir, "gone"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTrusted(link, rule()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dangling symlink: want fs.ErrNotExist, got %v", err)
	}
}

func TestReadTrustedRefusals(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		make    func(t *testing.T, dir string) string
		rule    TrustRule
		problem string
	}{
		{"file writable by group", func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o664)
		}, rule(), "writable by group or others"},
		{"file writable by others", func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o646)
		}, rule(), "writable by group or others"},
		{"foreign owner", func(t *testing.T, dir string) string {
			p := writeFile(t, filepath.Join(dir, "f"), "x", 0o644)
			chown(t, p, foreignUID)
			return p
		}, rule(), "owned by uid 65534"},
		{"folder writable by others", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o757)
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o644)
		}, rule(), "folder mode 0757"},
		{"folder writable by group", func(t *testing.T, dir string) string {
			chmod(t, dir, 0o775)
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o644)
		}, rule(), "writable by group or others"},
		{"folder with foreign owner", func(t *testing.T, dir string) string {
			p := writeFile(t, filepath.Join(dir, "f"), "x", 0o644)
			chown(t, dir, foreignUID)
			return p
		}, rule(), "folder owned by uid 65534"},
		{"private file readable by others", func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o604)
		}, TrustRule{Owners: []int{0}, Private: true}, "gives group or others access"},
		{"private file readable by group", func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "f"), "x", 0o640)
		}, TrustRule{Owners: []int{0}, Private: true}, "gives group or others access"},
		{"oversize file", func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "f"), strings.Repeat("x", 65), 0o644)
		}, rule(), "larger than the 64-byte limit"},
		{"folder instead of file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "sub")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, rule(), "not a regular file"},
		{"fifo", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, rule(), "not a regular file"},
		{"symlink to file with foreign owner", func(t *testing.T, dir string) string {
			target := writeFile(t, filepath.Join(trustDir(t), "target"), "x", 0o644)
			chown(t, target, foreignUID)
			return symlink(t, target, filepath.Join(dir, "link"))
		}, rule(), "owned by uid 65534"},
		{"symlink to file in a folder writable by others", func(t *testing.T, dir string) string {
			other := trustDir(t)
			target := writeFile(t, filepath.Join(other, "target"), "x", 0o644)
			chmod(t, other, 0o777)
			return symlink(t, target, filepath.Join(dir, "link"))
		}, rule(), "folder mode 0777"},
		{"chain of symlinks whose middle link is in a folder writable by others", func(t *testing.T, dir string) string {
			target := writeFile(t, filepath.Join(trustDir(t), "target"), "x", 0o644)
			middleDir := trustDir(t)
			middle := symlink(t, target, filepath.Join(middleDir, "middle"))
			chmod(t, middleDir, 0o777)
			return symlink(t, middle, filepath.Join(dir, "link"))
		}, rule(), "folder mode 0777"},
		{"chain of symlinks whose middle link is in a folder of another owner", func(t *testing.T, dir string) string {
			target := writeFile(t, filepath.Join(trustDir(t), "target"), "x", 0o644)
			middleDir := trustDir(t)
			middle := symlink(t, target, filepath.Join(middleDir, "middle"))
			chown(t, middleDir, foreignUID)
			return symlink(t, middle, filepath.Join(dir, "link"))
		}, rule(), "folder owned by uid 65534"},
		{"path through a symlinked folder kept in a folder writable by others", func(t *testing.T, dir string) string {
			real := trustDir(t)
			writeFile(t, filepath.Join(real, "f"), "x", 0o644)
			linkDir := trustDir(t)
			symlink(t, real, filepath.Join(linkDir, "d"))
			chmod(t, linkDir, 0o777)
			return filepath.Join(linkDir, "d", "f")
		}, rule(), "folder mode 0777"},
		{"good symlink in a folder writable by others", func(t *testing.T, dir string) string {
			target := writeFile(t, filepath.Join(trustDir(t), "target"), "x", 0o644)
			link := symlink(t, target, filepath.Join(dir, "link"))
			chmod(t, dir, 0o777)
			return link
		}, rule(), "folder mode 0777"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.make(t, trustDir(t))
			data, err := ReadTrusted(p, tt.rule)
			if data != nil {
				t.Fatalf("refused file returned data %q", data)
			}
			wantUntrusted(t, err, tt.problem)
		})
	}
}

func TestReadTrustedSymlinkToGoodFile(t *testing.T) {
	target := writeFile(t, filepath.Join(trustDir(t), "target"), "payload", 0o644)
	link := symlink(t, target, filepath.Join(trustDir(t), "link"))
	got, err := ReadTrusted(link, rule())
	if err != nil || string(got) != "payload" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReadTrustedPrivateAcceptsOwnerOnlyModes(t *testing.T) {
	dir := trustDir(t)
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := writeFile(t, filepath.Join(dir, "secret"+mode.String()), "pw", mode)
		if _, err := ReadTrusted(p, TrustRule{Owners: []int{os.Geteuid()}, Private: true}); err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
	}
}

func TestReadTrustedExactlyMaxSize(t *testing.T) {
	p := writeFile(t, filepath.Join(trustDir(t), "f"), strings.Repeat("x", 64), 0o644)
	got, err := ReadTrusted(p, rule())
	if err != nil || len(got) != 64 {
		t.Fatalf("len %d, %v", len(got), err)
	}
}

func TestDefaultTrustIncludesRootAndSelf(t *testing.T) {
	r := DefaultTrust()
	if r.Owners[0] != 0 || r.MaxSize != MaxManagedFileSize || r.Private {
		t.Fatalf("rule %+v", r)
	}
	if euid := os.Geteuid(); euid != 0 && (len(r.Owners) != 2 || r.Owners[1] != euid) {
		t.Fatalf("owners %v, want [0 %d]", r.Owners, euid)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, -1); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}
