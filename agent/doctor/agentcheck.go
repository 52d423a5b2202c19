package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
)

// Socket asks the agent's health over its socket. Nothing answering is a
// warning (the agent may simply be stopped; doctor works without it) unless
// the service manager says the service is running, which is then a failure:
// the agent is hung or listens elsewhere. A path squatted by something that
// is not rekey's socket is a failure: the agent cannot start there.
func Socket(ctx context.Context, path string, timeout time.Duration, svc ServiceState) Finding {
	const c = "socket"
	if path == "" {
		return warn(c, "pass --socket (or set REKEY_SOCKET)", "no socket configured: the local API is not checked")
	}
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode().Type() != fs.ModeSocket {
		return fail(c, fmt.Sprintf("find out what wrote %s, then remove it or choose another --socket", path),
			"%s is a %s, not a socket: the agent refuses to start there", path, platform.FileKind(fi.Mode()))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := api.NewClient(path)
	defer cl.Close()
	h, err := cl.Health(ctx)
	switch {
	case err == nil:
		return ok(c, "%s: the agent answers (version %s)", path, h.Version)
	case errors.Is(err, api.ErrAgentNotRunning) && svc == ServiceRunning:
		return fail(c, "compare --socket with the service's flags; read its log (journalctl -u rekey, or /Library/Logs/rekey/rekey.log)",
			"the service is running but nothing answers on %s", path)
	case errors.Is(err, api.ErrAgentNotRunning):
		return warn(c, "start it: sudo rekey start (or 'rekey run' in the foreground)", "the agent is not running (nothing answers on %s)", path)
	}
	return fail(c, fmt.Sprintf("find the program listening there (ss -xlp | grep %s, or lsof %s); stop it or choose another --socket", path, path),
		"%s does not answer like a rekey agent: %v", path, err)
}

// Service reports the installed service's state from status (nil: there is
// no service manager to ask) as a finding, and the state itself for Socket.
func Service(status func() (ServiceState, error)) (Finding, ServiceState) {
	const c = "service"
	if status == nil {
		return warn(c, "run 'rekey run' from your init system; check it there",
			"unknown: no systemd or launchd to ask on this machine"), ServiceUnknown
	}
	st, err := status()
	switch {
	case err != nil:
		return warn(c, "without systemd or launchd, run 'rekey run' from your own init system and check it there; otherwise see 'sudo rekey service-status'",
			"unknown: %v", err), ServiceUnknown
	case st == ServiceRunning:
		return ok(c, "installed and running"), st
	case st == ServiceStopped:
		return warn(c, "sudo rekey start", "installed but stopped: payloads are not watched"), st
	case st == ServiceNotInstalled:
		return warn(c, "sudo rekey install, then sudo rekey start", "not installed as a service"), st
	}
	return warn(c, "check it with 'sudo rekey service-status'", "unknown state %q", st), ServiceUnknown
}
