// Package doctor checks what can be wrong on a rekey endpoint — the binary's
// folders, the store, the sealing key, the passphrase file, the managed
// preferences, the socket and the service — without changing anything, and
// says how to fix each problem.
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/platform/clock"
)

// Level is how bad a finding is.
type Level string

const (
	OK   Level = "ok"   // nothing to do
	Warn Level = "warn" // works, but look at it (agent stopped, no payload yet ...)
	Fail Level = "fail" // broken: rekey cannot do its job until it is fixed
)

// Finding is the outcome of one check. Message and Fix never hold secrets.
type Finding struct {
	Check   string `json:"check"` // e.g. "database", "passphrase-file"
	Level   Level  `json:"level"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"` // what to run or change; empty when OK
}

// ServiceState is what the init system says of the installed service.
type ServiceState string

// Service states, as `rekey service-status` reports them.
const (
	ServiceRunning      ServiceState = "running"
	ServiceStopped      ServiceState = "stopped"
	ServiceNotInstalled ServiceState = "not-installed"
	ServiceUnknown      ServiceState = "unknown"
)

// Config names everything the checks look at. Paths are those of `rekey run`.
type Config struct {
	StateDir       string
	PrefsDir       string
	Domain         string
	PassphraseFile string
	Socket         string
	// Executable is the running rekey binary (os.Executable); empty skips
	// its check. ExecutableTop is where the walk up its folders stops
	// (default "/").
	Executable    string
	ExecutableTop string
	// Owners are the uids allowed to own trusted files and folders
	// (platform.DefaultTrust's when nil).
	Owners []int
	// StaleAfter: an unfinished rotation older than this is a failure
	// (default 1 h, longer than any retry wait of the agent).
	StaleAfter time.Duration
	// Service reports the installed service's state; nil means there is no
	// way to ask (reported as a warning).
	Service func() (ServiceState, error)
	// Timeout bounds the socket check (default 3 s).
	Timeout time.Duration
	// Clock tells the time an unfinished rotation's age is measured to
	// (default: the real clock).
	Clock clock.Clock
}

func (c *Config) setDefaults() {
	if c.Owners == nil {
		c.Owners = platform.DefaultTrust().Owners
	}
	if c.Domain == "" {
		c.Domain = platform.Domain
	}
	if c.ExecutableTop == "" {
		c.ExecutableTop = "/"
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = time.Hour
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
}

// Report is every finding of one run, in check order.
type Report struct {
	Findings []Finding `json:"findings"`
	Failed   bool      `json:"failed"` // at least one finding is Fail
}

// Run makes every check and never modifies what it looks at: the database is
// opened read-only, files are only read. It works with the agent stopped.
func Run(ctx context.Context, cfg Config) Report {
	cfg.setDefaults()
	var fs []Finding
	if cfg.Executable != "" {
		fs = append(fs, Executable(cfg.Executable, cfg.ExecutableTop, cfg.Owners))
	}
	fs = append(fs, StateDir(cfg.StateDir, cfg.Owners)...)
	fs = append(fs, AgentLock(cfg.StateDir))
	fs = append(fs, Database(ctx, cfg.StateDir, cfg.StaleAfter, cfg.Clock)...)
	fs = append(fs, SealKey(ctx, cfg.StateDir, cfg.Owners)...)
	fs = append(fs, PassphraseFile(cfg.PassphraseFile, cfg.Owners))
	fs = append(fs, Prefs(cfg.PrefsDir, cfg.Domain, cfg.Owners)...)
	svc, state := Service(cfg.Service)
	fs = append(fs, Socket(ctx, cfg.Socket, cfg.Timeout, state), svc)
	return newReport(fs)
}

func newReport(fs []Finding) Report {
	r := Report{Findings: fs}
	for _, f := range fs {
		if f.Level == Fail {
			r.Failed = true
		}
	}
	return r
}

// WriteText writes one line per finding — level, check, message — and the
// fix on the line under it.
func (r Report) WriteText(w io.Writer) error {
	for _, f := range r.Findings {
		lvl := string(f.Level)
		if f.Level == Fail {
			lvl = "FAIL"
		}
		if _, err := fmt.Fprintf(w, "%-4s  %-16s %s\n", lvl, f.Check, f.Message); err != nil {
			return err
		}
		if f.Fix != "" {
			if _, err := fmt.Fprintf(w, "      %-16s fix: %s\n", "", f.Fix); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteJSON writes the report as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// orRoot turns fix into "run doctor as root" when err is a permission
// refusal: the state folder and the key files are root's alone.
func orRoot(err error, fix string) string {
	if errors.Is(err, fs.ErrPermission) {
		return "run it as root: sudo rekey doctor"
	}
	return fix
}

func ok(check, format string, args ...any) Finding {
	return Finding{Check: check, Level: OK, Message: fmt.Sprintf(format, args...)}
}

func warn(check, fix, format string, args ...any) Finding {
	return Finding{Check: check, Level: Warn, Message: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(check, fix, format string, args ...any) Finding {
	return Finding{Check: check, Level: Fail, Message: fmt.Sprintf(format, args...), Fix: fix}
}
