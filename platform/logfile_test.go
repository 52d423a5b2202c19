package platform

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLogFileReopenFollowsARotation: after the file is renamed away (what
// newsyslog does), Reopen makes later lines land in a new file at the path.
func TestLogFileReopenFollowsARotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rekey.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path+".0"); got != "before\n" {
		t.Errorf("rotated file holds %q, want only the line before the rotation", got)
	}
	if got := readFile(t, path); got != "after\n" {
		t.Errorf("new file holds %q, want only the line after the reopen", got)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o027 != 0 {
		t.Errorf("log file mode %v: want no write for the group and nothing for others", st.Mode().Perm())
	}
}

// TestLogFileAppendsAndRefusesASymlink: an existing log is appended to, never
// truncated, and a symlink planted at the path is not followed.
func TestLogFileAppendsAndRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rekey.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := l.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after Close: %v, want os.ErrClosed", err)
	}
	if got := readFile(t, path); got != "old\nnew\n" {
		t.Errorf("log holds %q, want the old line then the new one", got)
	}

	target, link := filepath.Join(dir, "target"), filepath.Join(dir, "link.log")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := OpenLogFile(link); err == nil {
		l.Close()
		t.Fatal("a symlinked log file was opened")
	}
}

// TestPIDFileIsRemovedOnlyByItsWriter: the pid file holds the caller's pid as
// one decimal line; removal leaves another process's pid in place.
func TestPIDFileIsRemovedOnlyByItsWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rekey.pid")
	if err := WritePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("pid file holds %q, want %q", got, want)
	}
	if err := RemovePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file still there after RemovePIDFile: %v", err)
	}
	if err := RemovePIDFile(path); err != nil {
		t.Errorf("removing a missing pid file: %v", err)
	}
	other := strconv.Itoa(os.Getpid()+1) + "\n"
	if err := os.WriteFile(path, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemovePIDFile(path); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != other {
		t.Errorf("another process's pid file became %q", got)
	}
}
