package platform

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrLocked is wrapped by LockExclusive when another process holds the lock.
var ErrLocked = errors.New("held by another process")

// LockedError says which process holds a lock file. It unwraps to ErrLocked.
type LockedError struct {
	Path string
	PID  int // 0 when the holder did not record its pid
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is held by pid %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is held by another process", e.Path)
}

// Unwrap returns ErrLocked.
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is an exclusive lock on a file, held until Release or the process's end
// (the kernel drops it then, so a killed holder leaves no stale lock).
type Lock struct {
	f *os.File
}

// LockExclusive takes an exclusive, non-blocking flock(2) on path, creating
// the file 0600 if needed (a symlink is refused), and records the caller's pid
// in it. When another process holds it, the error is a *LockedError naming
// that process's pid, and the file is left as it was.
func LockExclusive(path string) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flockExclusive(f); err != nil {
		defer f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, &LockedError{Path: path, PID: readPID(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("record pid in lock file %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release empties the file, so that no stale pid is ever read from it, then
// drops the lock. The file itself stays.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	terr := l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	if terr != nil {
		return fmt.Errorf("clear pid in lock file: %w", terr)
	}
	return err
}

// LockHolder reports whether a process holds the lock on path and, if it
// recorded one, its pid. A missing file is not held. It creates nothing and
// does not write; it takes a shared lock for an instant when the file is free.
func LockHolder(path string) (held bool, pid int, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close()
	pid = readPID(f)
	free, err := flockProbe(f)
	if err != nil {
		return false, pid, fmt.Errorf("probe lock %s: %w", path, err)
	}
	return !free, pid, nil
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}
