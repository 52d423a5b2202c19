package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kardianos/service"
	"github.com/rekeyd/rekey/platform"
)

// fakeManager records what the commands ask of the service manager.
type fakeManager struct {
	platform string
	status   service.Status
	statErr  error
	calls    []string
}

func (f *fakeManager) Install() error   { f.calls = append(f.calls, "install"); return nil }
func (f *fakeManager) Uninstall() error { f.calls = append(f.calls, "uninstall"); return nil }
func (f *fakeManager) Start() error     { f.calls = append(f.calls, "start"); return nil }
func (f *fakeManager) Stop() error      { f.calls = append(f.calls, "stop"); return nil }
func (f *fakeManager) Platform() string { return f.platform }
func (f *fakeManager) Status() (service.Status, error) {
	return f.status, f.statErr
}

// withHooks replaces the service hooks for one test and returns the fake
// manager and a pointer to the config it was built with.
func withHooks(t *testing.T, goos string, euid int) (*fakeManager, **service.Config, *[]string) {
	t.Helper()
	saved := hooks
	t.Cleanup(func() { hooks = saved })
	fake := &fakeManager{platform: supportedServicePlatforms[goos], status: service.StatusStopped}
	var cfg *service.Config
	var dirs []string
	hooks = serviceHooks{
		goos:       goos,
		euid:       func() int { return euid },
		executable: func() (string, error) { return "/usr/local/bin/rekey", nil },
		manager: func(c *service.Config) (serviceManager, error) {
			cfg = c
			return fake, nil
		},
		mkdirAll: func(p string, _ os.FileMode) error { dirs = append(dirs, p); return nil },
	}
	return fake, &cfg, &dirs
}

func TestServiceCommandsRefuseWithoutRoot(t *testing.T) {
	for _, args := range [][]string{{"install"}, {"install", "--socket", "/run/x.sock"}, {"uninstall"}, {"start"}, {"stop"}} {
		fake, cfg, _ := withHooks(t, "linux", 65534)
		code, _, errOut := runCLI(t, "", args...)
		if code != exitFailure || !strings.Contains(errOut, "run it with sudo") {
			t.Errorf("%v: code %d, stderr %q", args, code, errOut)
		}
		if *cfg != nil || len(fake.calls) != 0 {
			t.Errorf("%v: touched the service manager without root: %v", args, fake.calls)
		}
	}
}

func TestInstallPassesRunFlagsThrough(t *testing.T) {
	cases := map[string]struct {
		args, want []string
	}{
		"no flags":        {nil, []string{"run"}},
		"flags":           {[]string{"--socket", "/run/alt.sock", "--domain=org.example"}, []string{"run", "--socket", "/run/alt.sock", "--domain=org.example"}},
		"after separator": {[]string{"--", "--print"}, []string{"run", "--print"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			fake, cfg, _ := withHooks(t, "linux", 0)
			code, out, errOut := runCLI(t, "", append([]string{"install"}, c.args...)...)
			if code != exitOK {
				t.Fatalf("code %d, stderr %q", code, errOut)
			}
			if diff := cmp.Diff([]string{"install"}, fake.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.want, (*cfg).Arguments); diff != "" {
				t.Errorf("arguments (-want +got):\n%s", diff)
			}
			unit, _ := (*cfg).Option["SystemdScript"].(string)
			wantLine := "ExecStart=/usr/local/bin/rekey " + strings.Join(c.want, " ") + "\n"
			if !strings.Contains(unit, wantLine) {
				t.Errorf("unit lacks %q:\n%s", wantLine, unit)
			}
			if !strings.Contains(out, "/etc/systemd/system/rekey.service") {
				t.Errorf("stdout %q does not say where the unit went", out)
			}
		})
	}
}

func TestInstallOnMacCreatesLogFolderAndUsesLabel(t *testing.T) {
	_, cfg, dirs := withHooks(t, "darwin", 0)
	if code, _, errOut := runCLI(t, "", "install"); code != exitOK {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	if (*cfg).Name != platform.LaunchdLabel || (*cfg).Option["LaunchdConfig"] == nil {
		t.Errorf("config name %q, launchd option %v", (*cfg).Name, (*cfg).Option["LaunchdConfig"] != nil)
	}
	if diff := cmp.Diff([]string{"/Library/Logs/rekey"}, *dirs); diff != "" {
		t.Errorf("created folders (-want +got):\n%s", diff)
	}
}

func TestInstallPrintNeedsNoRoot(t *testing.T) {
	fake, _, _ := withHooks(t, "linux", 65534)
	code, out, errOut := runCLI(t, "", "install", "--print", "--state-dir", "/srv/rekey")
	if code != exitOK {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "ExecStart=/usr/local/bin/rekey run --state-dir /srv/rekey\n") || !strings.Contains(out, "ReadWritePaths=-/srv/rekey\n") {
		t.Errorf("printed unit:\n%s", out)
	}
	if len(fake.calls) != 0 {
		t.Errorf("--print touched the service manager: %v", fake.calls)
	}
}

func TestInstallRefusesBadServiceDefinition(t *testing.T) {
	fake, _, _ := withHooks(t, "linux", 0)
	code, _, errOut := runCLI(t, "", "install", "--state-dir", "/home/me/rekey")
	if code != exitFailure || !strings.Contains(errOut, "ProtectHome") || len(fake.calls) != 0 {
		t.Errorf("code %d, calls %v, stderr %q", code, fake.calls, errOut)
	}
}

func TestServiceCommandsRefuseOtherInitSystems(t *testing.T) {
	fake, _, _ := withHooks(t, "linux", 0)
	fake.platform = "linux-systemv"
	code, _, errOut := runCLI(t, "", "install")
	if code != exitFailure || !strings.Contains(errOut, "linux-systemv") || len(fake.calls) != 0 {
		t.Errorf("code %d, calls %v, stderr %q", code, fake.calls, errOut)
	}
}

func TestServiceActionsCallTheManager(t *testing.T) {
	for cmd, want := range map[string][]string{"start": {"start"}, "stop": {"stop"}, "uninstall": {"stop", "uninstall"}} {
		fake, _, _ := withHooks(t, "linux", 0)
		if code, _, errOut := runCLI(t, "", cmd); code != exitOK {
			t.Fatalf("%s: code %d, stderr %q", cmd, code, errOut)
		}
		if diff := cmp.Diff(want, fake.calls); diff != "" {
			t.Errorf("%s calls (-want +got):\n%s", cmd, diff)
		}

		fake, _, _ = withHooks(t, "linux", 0)
		fake.statErr = service.ErrNotInstalled
		code, _, errOut := runCLI(t, "", cmd)
		if code != exitFailure || !strings.Contains(errOut, "not installed") || len(fake.calls) != 0 {
			t.Errorf("%s when not installed: code %d, calls %v, stderr %q", cmd, code, fake.calls, errOut)
		}
	}
}

func TestServiceStatusReportsState(t *testing.T) {
	cases := map[string]struct {
		status service.Status
		err    error
		want   string
	}{
		"running":       {service.StatusRunning, nil, "running"},
		"stopped":       {service.StatusStopped, nil, "stopped"},
		"not installed": {service.StatusUnknown, service.ErrNotInstalled, "not-installed"},
		"failed":        {service.StatusUnknown, errors.New("service in failed state"), "unknown"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			fake, _, _ := withHooks(t, "linux", 1000)
			fake.status, fake.statErr = c.status, c.err
			code, out, errOut := runCLI(t, "", "service-status", "--json")
			var st serviceStatus
			if code != exitOK || json.Unmarshal([]byte(out), &st) != nil {
				t.Fatalf("code %d, out %q, stderr %q", code, out, errOut)
			}
			if st.Status != c.want || st.Service != "rekey" || st.File != "/etc/systemd/system/rekey.service" {
				t.Errorf("status %+v, want %s", st, c.want)
			}
		})
	}
	withHooks(t, "darwin", 501)
	if code, _, errOut := runCLI(t, "", "service-status"); code != exitFailure || !strings.Contains(errOut, "sudo") {
		t.Errorf("darwin service-status as a user: code %d, stderr %q", code, errOut)
	}
}

// TestInstallRefusedForRealUnprivilegedChild runs the real CLI, unhooked, in
// a child process as uid 65534 (or as the current user when the tests do not
// run as root): it must refuse before touching any service manager.
func TestInstallRefusedForRealUnprivilegedChild(t *testing.T) {
	if os.Getenv("REKEY_TEST_INSTALL_CHILD") == "1" {
		os.Exit(Run(t.Context(), &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, []string{"install", "--domain", "org.example"}))
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rekey.test")
	copyExecutable(t, self, bin)
	cmd := exec.Command(bin, "-test.run=^TestInstallRefusedForRealUnprivilegedChild$")
	cmd.Env = append(os.Environ(), "REKEY_TEST_INSTALL_CHILD=1")
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		// t.TempDir and its parent are 0700: let uid 65534 reach the copy.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailure || !strings.Contains(string(out), "install needs root: run it with sudo") {
		t.Fatalf("child: err %v, output %q", err, out)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
