//go:build unix

package store

import (
	"errors"
	"fmt"
	"syscall"
)

// writableFS fails, wrapping syscall.EROFS, when dir is on a filesystem
// mounted read-only: SQLite would only say "unable to open database file".
func writableFS(dir string) error {
	const wOK = 2
	if err := syscall.Access(dir, wOK); errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("state folder %s is on a read-only filesystem; remount it read-write or pass another --state-dir: %w", dir, err)
	}
	return nil
}
