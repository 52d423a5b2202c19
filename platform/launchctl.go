package platform

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// LaunchdState is what launchd says of a system daemon.
type LaunchdState int

// Daemon states, from `launchctl print` and the plist on disk.
const (
	LaunchdNotInstalled LaunchdState = iota // no plist, not loaded
	LaunchdUnloaded                         // plist installed, not bootstrapped
	LaunchdStopped                          // bootstrapped, no process
	LaunchdRunning                          // bootstrapped, process running
)

// ErrLaunchctl is returned when a launchctl command fails.
var ErrLaunchctl = errors.New("launchctl failed")

// Launchctl drives one daemon of launchd's system domain with the verbs of
// macOS 10.11 and later — enable, bootstrap, bootout, kickstart, print — the
// same ones the installer package's scripts use.
type Launchctl struct {
	Label string // e.g. LaunchdLabel
	Plist string // the daemon's plist in /Library/LaunchDaemons
	// Run runs launchctl with args and returns its combined output and exit
	// code; err only when launchctl could not be run at all.
	Run func(args ...string) (out []byte, code int, err error)
	// Tries bounds bootstrap attempts (a daemon just booted out may still be
	// leaving); Sleep waits between them.
	Tries int
	Sleep func(time.Duration)
}

// NewLaunchctl returns a Launchctl that runs /bin/launchctl, trying
// bootstrap 10 times a second apart.
func NewLaunchctl(label, plist string) Launchctl {
	return Launchctl{Label: label, Plist: plist, Run: runLaunchctl, Tries: 10, Sleep: time.Sleep}
}

func runLaunchctl(args ...string) ([]byte, int, error) {
	out, err := exec.Command("/bin/launchctl", args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out, exit.ExitCode(), nil
	}
	if err != nil {
		return out, -1, fmt.Errorf("run launchctl: %w", err)
	}
	return out, 0, nil
}

func (l Launchctl) target() string { return "system/" + l.Label }

// run runs one launchctl command and turns a non-zero exit into an
// ErrLaunchctl naming the command, its exit code and launchctl's own words.
func (l Launchctl) run(args ...string) error {
	out, code, err := l.Run(args...)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%w: launchctl %s: exit %d: %s", ErrLaunchctl, strings.Join(args, " "), code, oneLine(out))
	}
	return nil
}

// Status asks `launchctl print system/<label>`; when launchd does not know
// the daemon, the plist on disk tells an unloaded daemon from none.
func (l Launchctl) Status() (LaunchdState, error) {
	out, code, err := l.Run("print", l.target())
	if err != nil {
		return LaunchdNotInstalled, err
	}
	if code == 0 {
		for line := range bytes.Lines(out) {
			if k, v, ok := strings.Cut(strings.TrimSpace(string(line)), " = "); ok && k == "state" {
				if v == "running" {
					return LaunchdRunning, nil
				}
				break
			}
		}
		return LaunchdStopped, nil
	}
	if _, err := os.Stat(l.Plist); errors.Is(err, fs.ErrNotExist) {
		return LaunchdNotInstalled, nil
	} else if err != nil {
		return LaunchdNotInstalled, fmt.Errorf("inspect %s: %w", l.Plist, err)
	}
	return LaunchdUnloaded, nil
}

// Start bootstraps the daemon when launchd does not have it (enabling it
// first, retrying bootstrap) and then kickstarts it, which starts it if it
// is not running.
func (l Launchctl) Start() error {
	st, err := l.Status()
	if err != nil {
		return err
	}
	switch st {
	case LaunchdNotInstalled:
		return fmt.Errorf("%w: %s is not installed (%s is missing)", ErrLaunchctl, l.Label, l.Plist)
	case LaunchdUnloaded:
		if err := l.run("enable", l.target()); err != nil {
			return err
		}
		if err := l.bootstrap(); err != nil {
			return err
		}
	}
	return l.run("kickstart", l.target())
}

func (l Launchctl) bootstrap() error {
	tries := max(l.Tries, 1)
	var err error
	for n := 1; n <= tries; n++ {
		if err = l.run("bootstrap", "system", l.Plist); err == nil {
			return nil
		}
		if n < tries {
			l.Sleep(time.Second)
		}
	}
	return fmt.Errorf("%w (tried %d times; on macOS 13 and later error 5 usually means the daemon is switched off in System Settings > General > Login Items: allow it there or deploy packaging/profiles/rekey-service-management.mobileconfig)", err, tries)
}

// Stop boots the daemon out of launchd; one launchd does not have is
// stopped already. It stays installed and starts again at the next boot.
func (l Launchctl) Stop() error {
	st, err := l.Status()
	if err != nil || st == LaunchdNotInstalled || st == LaunchdUnloaded {
		return err
	}
	return l.run("bootout", l.target())
}

// oneLine keeps launchctl's message short and on one line.
func oneLine(out []byte) string {
	s := strings.Join(strings.Fields(string(out)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		s = "no output"
	}
	return s
}
