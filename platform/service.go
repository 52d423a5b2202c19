package platform

import (
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
	"howett.net/plist"
)

// Names of the installed service.
const (
	ServiceName        = "rekey"                   // systemd unit rekey.service
	LaunchdLabel       = "com.github.rekeyd.rekey" // launchd label and plist name
	ServiceDescription = "rekey credential-rotation agent"
)

// Where the packages put the binary: a folder that only root may write, so
// that nobody but root can replace what the root service runs (on an Intel
// Mac with Homebrew, /usr/local/bin belongs to a user). The packaged service
// files start these paths; the packages link /usr/bin/rekey (Linux) and
// /usr/local/bin/rekey (macOS) to them for people.
const (
	PackagedExecutableLinux  = "/opt/rekey/bin/rekey"
	PackagedExecutableDarwin = "/usr/local/rekey/bin/rekey"
)

// ErrServiceSpec is returned when a ServiceSpec cannot be written into a
// service definition safely.
var ErrServiceSpec = errors.New("invalid service definition")

// ServiceSpec is what the service runs: the rekey binary and the flags passed
// through to `rekey run`.
type ServiceSpec struct {
	Executable string   // absolute path of the rekey binary
	RunArgs    []string // flags for `rekey run`, verbatim
}

// Arguments are the service's arguments after the executable.
func (s ServiceSpec) Arguments() []string { return append([]string{"run"}, s.RunArgs...) }

//go:embed servicefiles/rekey.service.in
var systemdUnitTemplate string

// ServiceConfig returns the kardianos/service configuration that installs
// rekey on goos, with our own unit or plist in place of kardianos's template.
func ServiceConfig(goos string, spec ServiceSpec) (*service.Config, error) {
	file, err := ServiceFile(goos, spec)
	if err != nil {
		return nil, err
	}
	c := &service.Config{
		DisplayName: ServiceDescription,
		Description: ServiceDescription,
		Executable:  spec.Executable,
		Arguments:   spec.Arguments(),
	}
	switch goos {
	case "linux":
		c.Name = ServiceName
		c.Option = service.KeyValue{"SystemdScript": string(file)}
	case "darwin":
		c.Name = LaunchdLabel
		c.Option = service.KeyValue{"LaunchdConfig": string(file)}
	}
	return c, nil
}

// ServiceFile renders the service definition for goos: a systemd unit on
// Linux, a launchd daemon plist on macOS.
func ServiceFile(goos string, spec ServiceSpec) ([]byte, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	switch goos {
	case "linux":
		return systemdUnit(spec)
	case "darwin":
		return launchdPlist(spec)
	}
	return nil, fmt.Errorf("service definition for %s: %w", goos, ErrUnsupported)
}

// ServiceFilePath is where `rekey install` (kardianos) writes the service
// definition on goos.
func ServiceFilePath(goos string) (string, error) {
	switch goos {
	case "linux":
		return "/etc/systemd/system/" + ServiceName + ".service", nil
	case "darwin":
		return "/Library/LaunchDaemons/" + LaunchdLabel + ".plist", nil
	}
	return "", fmt.Errorf("service file path for %s: %w", goos, ErrUnsupported)
}

// checkSpec refuses what no service file can carry: relative executables,
// control characters, and "{{", which kardianos would read as a template.
func checkSpec(spec ServiceSpec) error {
	if !filepath.IsAbs(spec.Executable) {
		return fmt.Errorf("%w: executable %q is not an absolute path; give the full path of the installed rekey binary", ErrServiceSpec, spec.Executable)
	}
	for _, a := range append([]string{spec.Executable}, spec.RunArgs...) {
		if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%w: argument %q holds a control character (newline, tab...); remove it", ErrServiceSpec, a)
		}
		if strings.Contains(a, "{{") || strings.Contains(a, "}}") {
			return fmt.Errorf("%w: argument %q holds \"{{\" or \"}}\", which service templates reserve; remove them", ErrServiceSpec, a)
		}
	}
	return nil
}

// launchdJob is the launchd daemon definition. ProcessType Background keeps a
// fleet agent from competing with the user for CPU and I/O. The agent writes
// its own log (Paths.LogFile, reopened on SIGHUP after newsyslog rotates it);
// launchd's StandardErrorPath catches only what comes before that file is open
// or bypasses the logger: start-up errors and a Go panic's trace. launchd
// opens it afresh at each start, so rotating it needs no signal.
type launchdJob struct {
	Label             string   `plist:"Label"`
	ProgramArguments  []string `plist:"ProgramArguments"`
	RunAtLoad         bool     `plist:"RunAtLoad"`
	KeepAlive         bool     `plist:"KeepAlive"`
	ProcessType       string   `plist:"ProcessType"`
	ThrottleInterval  int      `plist:"ThrottleInterval"`
	Umask             int      `plist:"Umask"`
	StandardErrorPath string   `plist:"StandardErrorPath"`
}

func launchdPlist(spec ServiceSpec) ([]byte, error) {
	paths, err := PathsFor("darwin")
	if err != nil {
		return nil, err
	}
	crash := filepath.Join(paths.LogDir, "rekey.stderr.log")
	job := launchdJob{
		Label:             LaunchdLabel,
		ProgramArguments:  append([]string{spec.Executable}, spec.Arguments()...),
		RunAtLoad:         true,
		KeepAlive:         true,
		ProcessType:       "Background",
		ThrottleInterval:  5,
		Umask:             0o077,
		StandardErrorPath: crash,
	}
	out, err := plist.MarshalIndent(job, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("encode launchd plist: %w", err)
	}
	return append(out, '\n'), nil
}
