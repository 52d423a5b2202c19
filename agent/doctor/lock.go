package doctor

import (
	"path/filepath"

	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// AgentLock reports which agent holds the state folder's lock (one agent per
// folder). It only reads: a free lock is taken in shared mode for an instant.
func AgentLock(dir string) Finding {
	const c = "agent-lock"
	path := filepath.Join(dir, store.LockFile)
	held, pid, err := platform.LockHolder(path)
	switch {
	case err != nil:
		return warn(c, orRoot(err, "check the state folder's permissions"), "read %s: %v", path, err)
	case held && pid > 0:
		return ok(c, "an agent (pid %d) holds %s; a second agent on this folder refuses to start", pid, path)
	case held:
		return ok(c, "an agent holds %s (pid not recorded)", path)
	}
	return ok(c, "no agent holds %s", path)
}
