package platform

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// LogFile is an append-only log file that Reopen points at its path again, so
// an outside rotation (newsyslog renames the file, then signals the process
// named in a pid file) takes effect without a restart. It is safe for
// concurrent use.
type LogFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenLogFile opens path for appending, creating it 0640 (less under the
// process's umask) if needed. A symlink at path is refused.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &LogFile{path: path, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|oNoFollow, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write appends p to the current file.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	return l.f.Write(p)
}

// Reopen opens the path again and writes there from now on; the previous file
// (renamed away by a rotation) is closed. When the path cannot be opened the
// previous file stays in use and the error says why.
func (l *LogFile) Reopen() error {
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the current file; later writes fail with os.ErrClosed.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// WritePIDFile records the caller's pid in path as one decimal line (the
// format newsyslog and most tools read), replacing the file atomically.
func WritePIDFile(path string) error {
	if err := WriteFileAtomic(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file %s: %w", path, err)
	}
	return nil
}

// RemovePIDFile removes path if it still holds the caller's pid, so that no
// tool signals a pid the system may hand to another process later. A missing
// file or another process's pid is left alone.
func RemovePIDFile(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pid file: %w", err)
	}
	if strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}
