package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/platform/clock"
	"github.com/rekeyd/rekey/store"
)

// minFree is the free space under which the state folder's filesystem is a
// failure: a cut-over needs a few pages of WAL.
const minFree = 1 << 20

// StateDir checks the state folder: a folder owned by a trusted uid, 0700,
// on a writable filesystem with free space.
func StateDir(dir string, owners []int) []Finding {
	const c = "state-folder"
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []Finding{warn(c, "start the agent: it creates the folder at its first start",
			"%s does not exist yet", dir)}
	case err != nil:
		return []Finding{fail(c, orRoot(err, "check the path and its parents' permissions"), "inspect %s: %v", dir, err)}
	case !fi.IsDir():
		return []Finding{fail(c, fmt.Sprintf("move %q away or pass another --state-dir", dir), "%s is not a folder", dir)}
	}
	var out []Finding
	if uid, ok := owner(fi); ok && !contains(owners, uid) {
		out = append(out, fail(c, fmt.Sprintf("chown root %q", dir), "%s is owned by uid %d, not by an allowed owner %v", dir, uid, owners))
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 != 0:
		out = append(out, fail(c, fmt.Sprintf("chmod 700 %q, then check that nobody replaced the files in it", dir),
			"%s has mode %04o: writable by group or others, so the agent refuses to start on it", dir, perm))
	case perm != 0o700:
		out = append(out, warn(c, fmt.Sprintf("chmod 700 %q (the agent also narrows it at start)", dir), "%s has mode %04o, not 0700", dir, perm))
	}
	if readOnlyFS(dir) {
		out = append(out, fail(c, "remount the filesystem read-write (mount -o remount,rw) or move the state folder",
			"%s is on a read-only filesystem: no import or rotation can be recorded", dir))
	}
	if free, err := freeBytes(dir); err == nil && free < minFree {
		out = append(out, fail(c, "free space on that filesystem; rekey needs a few MiB",
			"the filesystem holding %s has %d bytes free: imports and rotations fail until space is freed", dir, free))
	}
	if len(out) == 0 {
		out = append(out, ok(c, "%s: folder 0700, filesystem writable, space free", dir))
	}
	return out
}

// Database opens the database read-only and runs the store's integrity
// check and invariants. Unfinished rotations older than staleAfter fail.
func Database(ctx context.Context, dir string, staleAfter time.Duration, clk clock.Clock) []Finding {
	const c = "database"
	path := filepath.Join(dir, store.DBFile)
	if err := store.CheckPair(dir); err != nil { // the rule the agent's store starts by
		return []Finding{fail(c, fmt.Sprintf("stop the agent and restore %s from backup; starting it now is refused, as it would begin with an empty store", path), "%v", err)}
	}
	st, err := store.OpenReadOnly(dir, store.Options{Clock: clk})
	if err != nil {
		return []Finding{openFailure(path, err)}
	}
	defer st.Close()
	probs, err := st.Check(ctx, staleAfter)
	if err != nil {
		return []Finding{fail(c, "stop the agent, copy the state folder aside and restore rekey.db from backup", "check %s: %v", path, err)}
	}
	var out []Finding
	for _, p := range probs {
		out = append(out, fail(c, problemFix(p.Check), "%s: %s %s: %s", path, p.Check, p.Subject, p.Message))
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
		out = append(out, warn(c, fmt.Sprintf("chmod 600 %q (the agent also narrows it at start)", path), "%s has mode %04o, not 0600", path, fi.Mode().Perm()))
	}
	if len(probs) == 0 {
		ts, terr := st.Tenants(ctx)
		cs, cerr := st.Credentials(ctx)
		if err := errors.Join(terr, cerr); err != nil {
			return append(out, fail(c, "stop the agent and restore rekey.db from backup", "read %s: %v", path, err))
		}
		out = append(out, ok(c, "%s: integrity ok, every invariant holds (%d tenants, %d credentials)", path, len(ts), len(cs)))
	}
	return out
}

func openFailure(path string, err error) Finding {
	const c = "database"
	switch {
	case errors.Is(err, store.ErrNoDatabase):
		return warn(c, "start the agent: it creates the database at its first start", "%s does not exist yet", path)
	case errors.Is(err, store.ErrNewerSchema):
		return fail(c, "install the rekey version that wrote it (or newer)", "%v", err)
	case errors.Is(err, store.ErrNotDatabase):
		return fail(c, fmt.Sprintf("stop the agent, move %s away and restore it from backup", path), "%v", err)
	}
	return fail(c, orRoot(err, "check the file's permissions and the filesystem; restore from backup if it is damaged"), "%v", err)
}

// problemFix is the remedy for one kind of store.Problem.
func problemFix(check string) string {
	switch check {
	case "stale-rotation":
		return "if its import failed on an unreachable required auth check (see `rekey status`), fix the clock (NTP) or the network and run `sudo rekey retry IMPORT`; " +
			"otherwise restart the agent (sudo rekey stop; sudo rekey start): at start it resumes a validated rotation or fails a staged one cleanly"
	case "integrity":
		return "stop the agent, copy the state folder aside, and restore rekey.db from backup"
	}
	return "stop the agent, copy the state folder aside for a bug report, and restore rekey.db from backup"
}

// SealKey checks the sealing key file: a regular file of the right size, owned
// by a trusted uid, 0600 or stricter. A missing file is a failure when the
// database holds any credential, the rule the agent's store starts by. The
// key is read, never shown, and wiped.
func SealKey(ctx context.Context, dir string, owners []int) []Finding {
	const c = "seal-key"
	path := filepath.Join(dir, store.SealKeyFile)
	key, err := platform.ReadTrusted(path, platform.TrustRule{Owners: owners, Private: true, MaxSize: 64})
	defer clear(key)
	var te *platform.TrustError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		switch n := credentialCount(ctx, dir); {
		case n > 0:
			return []Finding{fail(c, fmt.Sprintf("stop the agent and restore %s from the same backup as rekey.db", path),
				"%s is missing but the database holds %d credentials: the agent refuses to start", path, n)}
		case n < 0:
			return []Finding{warn(c, "see the database check; the agent refuses to start if the database holds any credential",
				"%s is missing and the database cannot be read to count its credentials", path)}
		}
		return []Finding{ok(c, "%s not created yet (no credential exists); the agent creates it", path)}
	case errors.As(err, &te):
		return []Finding{fail(c, te.Fix, "%s: %s", te.Path, te.Problem)}
	case err != nil:
		return []Finding{fail(c, orRoot(err, "check the file and restore it from backup"), "read %s: %v", path, err)}
	case len(key) != 32:
		return []Finding{fail(c, fmt.Sprintf("restore %s from backup", path), "%s is %d bytes, expected 32", path, len(key))}
	}
	return []Finding{ok(c, "%s: 0600, trusted owner, 32 bytes", path)}
}

// credentialCount counts the database's credentials, with or without key
// material (-1 when unknown, 0 when there is no database).
func credentialCount(ctx context.Context, dir string) int {
	st, err := store.OpenReadOnly(dir, store.Options{})
	if errors.Is(err, store.ErrNoDatabase) {
		return 0
	}
	if err != nil {
		return -1
	}
	defer st.Close()
	cs, err := st.Credentials(ctx)
	if err != nil {
		return -1
	}
	return len(cs)
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
