package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/platform"
)

// errNotRoot is returned by the service commands when not run as root.
var errNotRoot = errors.New("needs root: run it with sudo")

// serviceManager is the part of kardianos/service the commands use.
type serviceManager interface {
	Install() error
	Uninstall() error
	Start() error
	Stop() error
	Status() (service.Status, error)
	Platform() string
}

var _ serviceManager = service.Service(nil)

// serviceHooks are the outside world of the service commands; tests replace
// them so that nothing is installed on the machine running the tests.
type serviceHooks struct {
	goos       string
	euid       func() int
	executable func() (string, error)
	manager    func(*service.Config) (serviceManager, error)
	mkdirAll   func(path string, perm os.FileMode) error
}

var hooks = serviceHooks{
	goos:       runtime.GOOS,
	euid:       os.Geteuid,
	executable: executablePath,
	manager:    newKardianos,
	mkdirAll:   os.MkdirAll,
}

// supportedServicePlatforms are the kardianos back ends our service files are
// written for.
var supportedServicePlatforms = map[string]string{"linux": "linux-systemd", "darwin": "darwin-launchd"}

// noProgram satisfies service.Interface for control commands, which never run
// the agent themselves.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

func newKardianos(c *service.Config) (serviceManager, error) {
	s, err := service.New(noProgram{}, c)
	if err != nil {
		return nil, fmt.Errorf("find service manager: %w", err)
	}
	if c.Name == platform.LaunchdLabel { // macOS: see launchdManager
		plist, err := platform.ServiceFilePath("darwin")
		if err != nil {
			return nil, err
		}
		return launchdManager{serviceManager: s, ctl: platform.NewLaunchctl(c.Name, plist)}, nil
	}
	return s, nil
}

func executablePath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return filepath.EvalSymlinks(exe)
}

// installArgs splits install's own flags (--print) from the flags passed
// through to `rekey run`. A literal "--" ends install's flags.
func installArgs(args []string) (printOnly bool, runArgs []string, err error) {
	for i, a := range args {
		switch a {
		case "-print", "--print":
			printOnly = true
		case "-h", "-help", "--help":
			return false, nil, errHelp
		case "--":
			return printOnly, args[i+1:], nil
		default:
			return printOnly, args[i:], nil
		}
	}
	return printOnly, nil, nil
}

// serviceFor builds the kardianos service for this system and checks that it
// is the init system our service files are written for.
func serviceFor(runArgs []string) (serviceManager, *service.Config, error) {
	exe, err := hooks.executable()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := platform.ServiceConfig(hooks.goos, platform.ServiceSpec{Executable: exe, RunArgs: runArgs})
	if err != nil {
		return nil, nil, fmt.Errorf("build service definition: %w", err)
	}
	m, err := hooks.manager(cfg)
	if err != nil {
		return nil, nil, err
	}
	if want := supportedServicePlatforms[hooks.goos]; m.Platform() != want {
		return nil, nil, fmt.Errorf("this system's service manager is %s; rekey installs only as %s: run 'rekey run' from your own init system instead", m.Platform(), want)
	}
	return m, cfg, nil
}

func requireRoot(name string) error {
	if hooks.euid() != 0 {
		return fmt.Errorf("%s %w (sudo rekey %s)", name, errNotRoot, name)
	}
	return nil
}

func runInstall(ctx context.Context, env *Env, args []string) error {
	printOnly, runArgs, err := installArgs(args)
	if errors.Is(err, errHelp) {
		fs := newFlagSet("install", env.Stderr)
		fs.Bool("print", false, "write the launchd plist or systemd unit to stdout instead of installing it; the flags after it (or after --) go to 'rekey run'")
		return &helpError{fs: fs}
	}
	if printOnly {
		exe, err := hooks.executable()
		if err != nil {
			return err
		}
		file, err := platform.ServiceFile(hooks.goos, platform.ServiceSpec{Executable: exe, RunArgs: runArgs})
		if err != nil {
			return fmt.Errorf("build service definition: %w", err)
		}
		_, err = env.Stdout.Write(file)
		return err
	}
	if err := requireRoot("install"); err != nil {
		return err
	}
	m, cfg, err := serviceFor(runArgs)
	if err != nil {
		return err
	}
	if paths, err := platform.PathsFor(hooks.goos); err == nil && paths.LogDir != "" {
		if err := hooks.mkdirAll(paths.LogDir, 0o755); err != nil {
			return fmt.Errorf("create log folder: %w", err)
		}
	}
	path, _ := platform.ServiceFilePath(hooks.goos)
	if err := m.Install(); err != nil {
		return fmt.Errorf("install service %s: %w (if it is already installed, run 'sudo rekey uninstall' first)", cfg.Name, err)
	}
	fmt.Fprintf(env.Stdout, "installed %s at %s; start it with: sudo rekey start\n", cfg.Name, path)
	return nil
}

// serviceAction returns the run function of uninstall, start or stop.
func serviceAction(name string) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error {
		fs := newFlagSet(name, env.Stderr)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usageError("%s takes no arguments", name)
		}
		if err := requireRoot(name); err != nil {
			return err
		}
		m, cfg, err := serviceFor(nil)
		if err != nil {
			return err
		}
		if _, err := m.Status(); errors.Is(err, service.ErrNotInstalled) {
			return fmt.Errorf("%s: service %s is not installed; install it with 'sudo rekey install'", name, cfg.Name)
		}
		uninstall := func() error {
			_ = m.Stop() // systemd's uninstall leaves a running unit running; stopped already is fine
			return m.Uninstall()
		}
		actions := map[string]func() error{"uninstall": uninstall, "start": m.Start, "stop": m.Stop}
		if err := actions[name](); err != nil {
			return fmt.Errorf("%s service %s: %w", name, cfg.Name, err)
		}
		done := map[string]string{"uninstall": "uninstalled (state folder kept)", "start": "started", "stop": "stopped"}
		fmt.Fprintf(env.Stdout, "%s %s\n", cfg.Name, done[name])
		return nil
	}
}

// serviceStatus is the answer of service-status.
type serviceStatus struct {
	Service  string `json:"service"`
	Platform string `json:"platform"`
	Status   string `json:"status"` // running, stopped, not-installed, unknown
	File     string `json:"file"`
	Error    string `json:"error,omitempty"`
}

func runServiceStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("service-status", env.Stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("service-status takes no arguments")
	}
	// launchctl shows the system domain's daemons to root only.
	if hooks.goos == "darwin" {
		if err := requireRoot("service-status"); err != nil {
			return err
		}
	}
	m, cfg, err := serviceFor(nil)
	if err != nil {
		return err
	}
	st := serviceStatus{Service: cfg.Name, Platform: m.Platform()}
	st.File, _ = platform.ServiceFilePath(hooks.goos)
	s, err := m.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		st.Status = "not-installed"
	case err != nil:
		st.Status, st.Error = "unknown", err.Error()
	case s == service.StatusRunning:
		st.Status = "running"
	case s == service.StatusStopped:
		st.Status = "stopped"
	default:
		st.Status = "unknown"
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(st)
	}
	fmt.Fprintf(env.Stdout, "%s (%s): %s\n", st.Service, st.Platform, st.Status)
	if st.Error != "" {
		fmt.Fprintf(env.Stdout, "  %s\n", st.Error)
	}
	return nil
}
