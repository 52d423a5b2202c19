package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// PrepareStateDir makes sure dir is a state folder an agent running as uid
// owner may trust: it creates it 0700 when missing, narrows a readable one
// (0755, 0750...) to 0700, and refuses (with a *TrustError) a path that is not
// a folder, a folder owned by another uid (its owner could open it up and
// read the sealing key) or one writable by group or others (anyone could have
// swapped the files in it). It is the one check of the state folder: the
// agent runs it before taking the folder's lock, and the store's Open again,
// so that the store is safe on its own.
func PrepareStateDir(dir string, owner int) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create state folder: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("inspect state folder: %w", err)
	}
	if !fi.IsDir() {
		return &TrustError{Path: dir, Problem: "state folder is not a folder", Fix: "move it away or pass another --state-dir"}
	}
	uid, err := ownerOf(fi)
	if err != nil {
		return fmt.Errorf("check owner of state folder %s: %w", dir, err)
	}
	if uid != owner {
		return &TrustError{Path: dir, Problem: fmt.Sprintf("state folder owned by uid %d, not by the agent's uid %d", uid, owner),
			Fix: fmt.Sprintf("chown -R %d %q && chmod 700 %q, or run the agent as uid %d", owner, dir, dir, uid)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &TrustError{Path: dir, Problem: fmt.Sprintf("state folder mode %04o is writable by group or others", perm),
			Fix: fmt.Sprintf("chmod 700 %q, then check that nobody replaced the files in it (rekey doctor)", dir)}
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("narrow state folder to 0700: %w", err)
		}
	}
	return nil
}
