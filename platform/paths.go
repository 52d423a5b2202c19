package platform

import (
	"fmt"
	"path/filepath"
	"runtime"
)

// Paths are the default locations rekey uses on one operating system. Every
// one of them can be overridden by a flag.
type Paths struct {
	PrefsDir       string // managed-preferences folder (machine scope)
	UserPrefs      bool   // per-user subfolders <PrefsDir>/<user>/ are watched too
	StateDir       string // database, sealing key, status plist
	Socket         string // the local API socket
	PassphraseFile string // passphrases for silent rollout, one per line
	AdminGroup     string // members may use the local API beyond /v1/health
	LogDir         string // service log folder; empty where the service manager keeps logs
	LogFile        string // the agent's log, reopened on SIGHUP; empty: stderr
	PIDFile        string // pid file naming the agent to signal after a log rotation; empty: none
}

// Domain is the default managed-preferences domain.
const Domain = "com.github.rekeyd.rekey"

// PathsFor returns the default paths for goos ("darwin" or "linux").
func PathsFor(goos string) (Paths, error) {
	switch goos {
	case "darwin":
		state := "/Library/Application Support/rekey"
		return Paths{
			PrefsDir:       "/Library/Managed Preferences",
			UserPrefs:      true,
			StateDir:       state,
			Socket:         "/var/run/rekey.sock",
			PassphraseFile: filepath.Join(state, "passphrase"),
			AdminGroup:     "admin",
			LogDir:         "/Library/Logs/rekey",
			LogFile:        "/Library/Logs/rekey/rekey.log",
			PIDFile:        "/var/run/rekey.pid", // newsyslog.conf takes no path with a space, so not the state folder's lock
		}, nil
	case "linux":
		return Paths{
			PrefsDir:       "/etc/rekey/managed",
			StateDir:       "/var/lib/rekey",
			Socket:         "/run/rekey/rekey.sock", // folder made by systemd's RuntimeDirectory=rekey
			PassphraseFile: "/etc/rekey/passphrase",
			AdminGroup:     "sudo",
		}, nil
	}
	return Paths{}, fmt.Errorf("default paths for %s: %w", goos, ErrUnsupported)
}

// DefaultPaths returns the default paths for the running system.
func DefaultPaths() (Paths, error) { return PathsFor(runtime.GOOS) }

// PrefsFile is the managed-preferences file of domain in folder dir.
func PrefsFile(dir, domain string) string { return filepath.Join(dir, domain+".plist") }
