package platform_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyd/rekey/platform"
)

func TestLockExclusiveRefusesASecondHolderAndNamesTheFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.lock")
	if held, _, err := platform.LockHolder(path); held || err != nil {
		t.Fatalf("holder of a missing lock file: %v, %v", held, err)
	}
	l, err := platform.LockExclusive(path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in the
	// same process conflicts like another process would.
	_, err = platform.LockExclusive(path)
	var le *platform.LockedError
	if !errors.As(err, &le) || !errors.Is(err, platform.ErrLocked) || le.PID != os.Getpid() {
		t.Fatalf("second lock: %v; want LockedError naming pid %d", err, os.Getpid())
	}
	if held, pid, err := platform.LockHolder(path); !held || pid != os.Getpid() || err != nil {
		t.Fatalf("holder while locked: %v %d %v", held, pid, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if held, pid, err := platform.LockHolder(path); held || pid != 0 || err != nil {
		t.Fatalf("holder after release: %v, pid %d, %v; want free and no stale pid", held, pid, err)
	}
	l2, err := platform.LockExclusive(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
}

func TestLockExclusiveRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "agent.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := platform.LockExclusive(link); err == nil {
		l.Release()
		t.Fatal("a symlinked lock file was accepted")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("the link's target was written: %q", b)
	}
}

func TestPrepareStateDirRefusesAFolderOthersMayWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := platform.PrepareStateDir(dir, os.Geteuid()); err != nil {
		t.Fatalf("new state folder: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created state folder: %v %v", fi, err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := platform.PrepareStateDir(dir, os.Geteuid()); err != nil {
		t.Fatalf("readable state folder: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("readable state folder not narrowed to 0700: %v %v", fi, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	err := platform.PrepareStateDir(dir, os.Geteuid())
	var te *platform.TrustError
	if !errors.As(err, &te) || te.Fix == "" {
		t.Fatalf("world-writable state folder: %v; want a TrustError with a fix", err)
	}
	os.Chmod(dir, 0o700)
	err = platform.PrepareStateDir(dir, os.Geteuid()+1)
	if !errors.As(err, &te) || te.Fix == "" {
		t.Fatalf("state folder of another uid: %v; want a TrustError with a fix", err)
	}
}
