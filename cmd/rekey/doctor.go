package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/platform"
)

// errDoctorFailed makes doctor exit 1 after printing its report.
var errDoctorFailed = fmt.Errorf("at least one check failed; see the fixes above%w", errInOutput)

func runDoctor(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("doctor", env.Stderr)
	p, err := platform.DefaultPaths()
	if err != nil {
		return err
	}
	sock := p.Socket
	if s := env.Getenv("REKEY_SOCKET"); s != "" {
		sock = s
	}
	cfg := doctor.Config{Owners: platform.DefaultTrust().Owners, Service: serviceState}
	// The running binary, symlinks resolved: the one the service starts.
	if exe, err := hooks.executable(); err == nil {
		cfg.Executable = exe
	}
	fs.StringVar(&cfg.StateDir, "state-dir", p.StateDir, "state folder (database, sealing key)")
	fs.StringVar(&cfg.PrefsDir, "prefs-dir", p.PrefsDir, "managed-preferences folder")
	fs.StringVar(&cfg.Domain, "domain", platform.Domain, "managed-preferences domain")
	fs.StringVar(&cfg.PassphraseFile, "passphrase-file", p.PassphraseFile, "passphrase file for silent rollout")
	fs.StringVar(&cfg.Socket, "socket", sock, "local API socket (env REKEY_SOCKET)")
	fs.DurationVar(&cfg.StaleAfter, "stale-after", time.Hour, "an unfinished rotation older than this is a failure")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("doctor takes no arguments")
	}
	if cfg.StaleAfter <= 0 {
		return usageError("--stale-after %s: give a positive duration such as 1h", cfg.StaleAfter)
	}
	r := doctor.Run(ctx, cfg)
	if *asJSON {
		err = r.WriteJSON(env.Stdout)
	} else {
		err = r.WriteText(env.Stdout)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if r.Failed {
		return errDoctorFailed
	}
	return nil
}

// serviceState asks the service manager through the same path as
// `rekey service-status`. Without systemd or launchd it returns an error,
// which doctor reports as an unknown state (a warning).
func serviceState() (doctor.ServiceState, error) {
	if hooks.goos == "darwin" && hooks.euid() != 0 {
		return doctor.ServiceUnknown, errors.New("launchd shows system daemons to root only; run doctor with sudo")
	}
	// Only the service's name matters to ask for its state: describe it with
	// the packaged binary so that where this binary lies plays no part.
	exe := platform.PackagedExecutableLinux
	if hooks.goos == "darwin" {
		exe = platform.PackagedExecutableDarwin
	}
	cfg, err := platform.ServiceConfig(hooks.goos, platform.ServiceSpec{Executable: exe})
	if err != nil {
		return doctor.ServiceUnknown, fmt.Errorf("describe the service: %w", err)
	}
	m, err := hooks.manager(cfg)
	if err != nil {
		return doctor.ServiceUnknown, err
	}
	if want := supportedServicePlatforms[hooks.goos]; m.Platform() != want {
		return doctor.ServiceUnknown, fmt.Errorf("this system's service manager is %s, not %s", m.Platform(), want)
	}
	s, err := m.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return doctor.ServiceNotInstalled, nil
	case err != nil:
		return doctor.ServiceUnknown, err
	case s == service.StatusRunning:
		return doctor.ServiceRunning, nil
	case s == service.StatusStopped:
		return doctor.ServiceStopped, nil
	}
	return doctor.ServiceUnknown, nil
}
