package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/platform"
)

// agentFlags are the flags of `rekey run` (and of `rekey install`, which
// passes them on to the service).
type agentFlags struct {
	prefsDir, domain, stateDir, socket, passphraseFile, statusFile, adminGroup string
	userPrefs, socketFromEnv                                                   bool
	maxWorkFactor                                                              int
	logFormat, logLevel, logFile, pidFile                                      string
	rescan                                                                     time.Duration
}

func (f *agentFlags) register(fs *flag.FlagSet, env *Env) error {
	p, err := platform.DefaultPaths()
	if err != nil {
		return err
	}
	sock := p.Socket
	if s := env.Getenv("REKEY_SOCKET"); s != "" {
		sock, f.socketFromEnv = s, true
	}
	fs.StringVar(&f.prefsDir, "prefs-dir", p.PrefsDir, "managed-preferences folder")
	fs.StringVar(&f.domain, "domain", platform.Domain, "managed-preferences domain")
	fs.BoolVar(&f.userPrefs, "user-prefs", p.UserPrefs, "also watch per-user managed preferences")
	fs.StringVar(&f.stateDir, "state-dir", p.StateDir, "state folder (database, sealing key, status file)")
	fs.StringVar(&f.socket, "socket", sock, "local API socket (env REKEY_SOCKET)")
	fs.StringVar(&f.passphraseFile, "passphrase-file", p.PassphraseFile, "passphrase file for silent rollout")
	fs.StringVar(&f.statusFile, "status-file", "", "status plist for MDM inventory (default <state-dir>/status.plist)")
	fs.StringVar(&f.adminGroup, "admin-group", p.AdminGroup, "group whose members may use the local API")
	fs.IntVar(&f.maxWorkFactor, "max-work-factor", 18, "highest scrypt work factor accepted in a payload (at most 20)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	// The log and pid file defaults are system paths, used by root only: a
	// run by another user logs to stderr unless it names a file.
	logFile, pidFile := "", ""
	if os.Geteuid() == 0 {
		logFile, pidFile = p.LogFile, p.PIDFile
	}
	fs.StringVar(&f.logFile, "log-file", logFile, "log file, reopened on SIGHUP (macOS root default /Library/Logs/rekey/rekey.log); empty: stderr")
	fs.StringVar(&f.pidFile, "pid-file", pidFile, "pid file for log rotation to signal (macOS root default /var/run/rekey.pid); empty: none")
	fs.DurationVar(&f.rescan, "rescan", 5*time.Minute, "full rescan interval of the managed preferences")
	return nil
}

// unprivilegedCheck refuses a non-root run that left a system path at its default.
func (f *agentFlags) unprivilegedCheck(fs *flag.FlagSet) error {
	if os.Geteuid() == 0 {
		return nil
	}
	set := map[string]bool{"socket": f.socketFromEnv}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var missing []string
	for _, name := range []string{"prefs-dir", "state-dir", "socket", "passphrase-file"} {
		if !set[name] {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return usageError("not running as root: give %s (or run with sudo)", strings.Join(missing, ", "))
	}
	return nil
}

func (f *agentFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageError("--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError("--log-format %q: use text or json", f.logFormat)
}

func (f *agentFlags) config(log *slog.Logger) agent.Config {
	return agent.Config{
		PrefsDir: f.prefsDir, Domain: f.domain, UserPrefs: f.userPrefs,
		StateDir: f.stateDir, Socket: f.socket, StatusFile: f.statusFile,
		PassphraseFile: f.passphraseFile, AdminGroup: f.adminGroup,
		MaxWorkFactor: f.maxWorkFactor, Rescan: f.rescan,
		Logger: log, Version: version,
	}
}

func runAgent(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("run", env.Stderr)
	var f agentFlags
	if err := f.register(fs, env); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("run takes no arguments")
	}
	if f.maxWorkFactor < 1 || f.maxWorkFactor > 20 {
		return usageError("--max-work-factor %d: use 1 to 20", f.maxWorkFactor)
	}
	if err := f.unprivilegedCheck(fs); err != nil {
		return err
	}
	var out io.Writer = env.Stderr
	var logFile *platform.LogFile
	if f.logFile != "" {
		lf, err := platform.OpenLogFile(f.logFile)
		if err != nil {
			return fmt.Errorf("%w (give another --log-file, or --log-file '' for stderr)", err)
		}
		defer lf.Close()
		logFile = lf
		out = logFile
	}
	log, err := f.logger(out)
	if err != nil {
		return err
	}
	a, err := agent.New(f.config(log))
	if err != nil {
		log.Error("agent not started", "err", err)
		return err
	}
	defer a.Close()
	if f.pidFile != "" { // written only once this agent holds the state folder
		if err := platform.WritePIDFile(f.pidFile); err != nil {
			return fmt.Errorf("%w (give another --pid-file, or --pid-file '' for none)", err)
		}
		defer func() {
			if err := platform.RemovePIDFile(f.pidFile); err != nil {
				log.Warn("remove pid file", "path", f.pidFile, "err", err)
			}
		}()
	}
	defer onHangup(ctx, a, logFile, log)()
	if err := a.Run(ctx); err != nil {
		log.Error("agent failed", "err", err)
		return fmt.Errorf("agent: %w", err)
	}
	log.Info("agent stopped")
	return nil
}

// onHangup makes SIGHUP reopen the log file (if there is one: newsyslog
// renamed it and sent the signal) and ask the agent for a full re-read of the
// managed preferences, the daemon conventions, until the returned stop is
// called. It is registered before the agent serves its socket, so a client
// that reaches the agent may already send SIGHUP.
func onHangup(ctx context.Context, a *agent.Agent, logFile *platform.LogFile, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if logFile != nil {
					if err := logFile.Reopen(); err != nil {
						log.Error("SIGHUP: reopen the log file; still writing to the old one", "err", err)
					}
				}
				log.Info("SIGHUP: rescanning the managed preferences")
				a.Rescan()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
