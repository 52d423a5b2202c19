package platform

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"howett.net/plist"
)

var update = flag.Bool("update", false, "rewrite the service files under packaging/ from the templates")

// packagedFiles are the service files shipped under packaging/, each the
// rendering of ServiceFile for the packaged binary with no extra flags.
var packagedFiles = []struct {
	goos, exe, path string
}{
	{"linux", PackagedExecutableLinux, "../packaging/linux/rekey.service"},
	{"darwin", PackagedExecutableDarwin, "../packaging/macos/" + LaunchdLabel + ".plist"},
}

func TestPackagedServiceFilesMatchTemplates(t *testing.T) {
	for _, f := range packagedFiles {
		want, err := ServiceFile(f.goos, ServiceSpec{Executable: f.exe})
		if err != nil {
			t.Fatalf("%s: %v", f.goos, err)
		}
		if *update {
			if err := os.WriteFile(f.path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatalf("%v (run go test ./platform -run PackagedServiceFiles -update)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s drifted from platform's template (-template +file); run go test ./platform -run PackagedServiceFiles -update:\n%s", f.path, diff)
		}
	}
}

func TestLaunchdPlistKeys(t *testing.T) {
	data, err := os.ReadFile("../packaging/macos/" + LaunchdLabel + ".plist")
	if err != nil {
		t.Fatal(err)
	}
	var job map[string]any
	if _, err := plist.Unmarshal(data, &job); err != nil {
		t.Fatalf("parse plist: %v", err)
	}
	want := map[string]any{
		"Label":             LaunchdLabel,
		"ProgramArguments":  []any{PackagedExecutableDarwin, "run"},
		"RunAtLoad":         true,
		"KeepAlive":         true,
		"ProcessType":       "Background",
		"ThrottleInterval":  uint64(5),
		"Umask":             uint64(0o077),
		"StandardErrorPath": "/Library/Logs/rekey/rekey.stderr.log", // panics only: the agent writes rekey.log itself
	}
	if diff := cmp.Diff(want, job); diff != "" {
		t.Errorf("launchd plist (-want +got):\n%s", diff)
	}
}

// unit is a parsed systemd unit: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is neither a section nor key=value", n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %d values %q, want 1", section, key, len(v), v)
	}
	return v[0]
}

func TestSystemdUnitSections(t *testing.T) {
	data, err := os.ReadFile("../packaging/linux/rekey.service")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, data)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("no [%s] section", s)
		}
	}
	want := map[string]string{
		"ExecStart":            PackagedExecutableLinux + " run",
		"Restart":              "on-failure",
		"RestartSec":           "5s",
		"StateDirectory":       "rekey",
		"ProtectSystem":        "strict",
		"RuntimeDirectory":     "rekey",
		"RuntimeDirectoryMode": "0755",
		"ProcSubset":           "pid",
		"PrivateMounts":        "yes",
		"NoNewPrivileges":      "yes",
		"ProtectHome":          "yes",
		"PrivateTmp":           "yes",
		"UMask":                "0077",
	}
	for k, v := range want {
		if got := u.one(t, "Service", k); got != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}
	// The agent reads /etc/rekey: nothing may hide or deny it. The packaged
	// unit opens nothing beyond its state and runtime folders.
	for _, k := range []string{"InaccessiblePaths", "TemporaryFileSystem", "ReadOnlyPaths", "ReadWritePaths"} {
		if v, ok := u["Service"][k]; ok {
			t.Errorf("[Service] %s=%q would get in the way of /etc/rekey or /var/lib/rekey", k, v)
		}
	}
}

// splitExecStart undoes systemdQuote: it splits a command line as systemd
// does, then expands %% and $$.
func splitExecStart(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		words[i] = strings.NewReplacer("%%", "%", "$$", "$").Replace(w)
	}
	return words
}

func TestServiceFilesPassArgumentsThrough(t *testing.T) {
	spec := ServiceSpec{
		Executable: "/opt/re key/rekey",
		RunArgs: []string{"--socket", "/run/rekey test.sock", "--state-dir=/srv/rekey", "--domain",
			`odd"name\with$HOME%i`, "--passphrase-file", "/etc/rekey/pass & more"},
	}
	want := append([]string{spec.Executable, "run"}, spec.RunArgs...)

	data, err := ServiceFile("linux", spec)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, data)
	if diff := cmp.Diff(want, splitExecStart(t, u.one(t, "Service", "ExecStart"))); diff != "" {
		t.Errorf("ExecStart words (-want +got):\n%s", diff)
	}
	rw := splitExecStart(t, u.one(t, "Service", "ReadWritePaths"))
	if diff := cmp.Diff([]string{"-/run", "-/srv/rekey"}, rw); diff != "" {
		t.Errorf("ReadWritePaths (-want +got):\n%s", diff)
	}

	data, err = ServiceFile("darwin", spec)
	if err != nil {
		t.Fatal(err)
	}
	var job launchdJob
	if _, err := plist.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, job.ProgramArguments); diff != "" {
		t.Errorf("ProgramArguments (-want +got):\n%s", diff)
	}
}

func TestServiceFileRefusesBadSpecs(t *testing.T) {
	cases := map[string]ServiceSpec{
		"relative executable":   {Executable: "rekey"},
		"newline in argument":   {Executable: "/usr/bin/rekey", RunArgs: []string{"--domain", "a\nExecStartPre=/bin/sh"}},
		"template braces":       {Executable: "/usr/bin/rekey", RunArgs: []string{"--domain", "{{Path}}"}},
		"state dir under /home": {Executable: "/usr/bin/rekey", RunArgs: []string{"--state-dir", "/home/admin/rekey"}},
		"executable under root": {Executable: "/root/rekey"},
		"executable under /tmp": {Executable: "/tmp/go-build1/exe/rekey"},
		"relative socket":       {Executable: "/usr/bin/rekey", RunArgs: []string{"--socket=rekey.sock"}},
		"flag without value":    {Executable: "/usr/bin/rekey", RunArgs: []string{"--status-file"}},
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ServiceFile("linux", spec)
			if !errors.Is(err, ErrServiceSpec) {
				t.Fatalf("err = %v, want ErrServiceSpec", err)
			}
		})
	}
	if _, err := ServiceFile("plan9", ServiceSpec{Executable: "/bin/rekey"}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("plan9: err = %v, want ErrUnsupported", err)
	}
}

func TestServiceConfigPerSystem(t *testing.T) {
	spec := ServiceSpec{Executable: "/usr/local/bin/rekey", RunArgs: []string{"--domain", "org.example"}}
	for goos, want := range map[string]struct{ name, option string }{
		"linux":  {ServiceName, "SystemdScript"},
		"darwin": {LaunchdLabel, "LaunchdConfig"},
	} {
		c, err := ServiceConfig(goos, spec)
		if err != nil {
			t.Fatalf("%s: %v", goos, err)
		}
		file, _ := ServiceFile(goos, spec)
		if c.Name != want.name || c.Option[want.option] != string(file) || c.Executable != spec.Executable {
			t.Errorf("%s: name %q, executable %q, option %s set: %v", goos, c.Name, c.Executable, want.option, c.Option[want.option] == string(file))
		}
		if diff := cmp.Diff([]string{"run", "--domain", "org.example"}, c.Arguments); diff != "" {
			t.Errorf("%s arguments (-want +got):\n%s", goos, diff)
		}
		path, err := ServiceFilePath(goos)
		if err != nil || !filepath.IsAbs(path) {
			t.Errorf("%s: service file path %q, %v", goos, path, err)
		}
	}
}

func TestUnitOpensOnlyFoldersOutsideItsOwn(t *testing.T) {
	lin, err := PathsFor("linux")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		want []string // ReadWritePaths words; nil: no such line
	}{
		"default socket":            {nil, nil},
		"socket in runtime folder":  {[]string{"--socket", filepath.Join(runtimeDir, "other.sock")}, nil},
		"default socket, spelt out": {[]string{"--socket=" + lin.Socket}, nil},
		"socket elsewhere":          {[]string{"--socket", "/srv/sock/rekey.sock"}, []string{"-/srv/sock"}},
		"status file and state":     {[]string{"--status-file", "/srv/st/s.plist", "--state-dir", "/srv/st"}, []string{"-/srv/st"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			data, err := ServiceFile("linux", ServiceSpec{Executable: PackagedExecutableLinux, RunArgs: c.args})
			if err != nil {
				t.Fatal(err)
			}
			u := parseUnit(t, data)
			var got []string
			if v, ok := u["Service"]["ReadWritePaths"]; ok {
				got = splitExecStart(t, u.one(t, "Service", "ReadWritePaths"))
				if len(v) != 1 {
					t.Fatalf("ReadWritePaths given %d times", len(v))
				}
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("ReadWritePaths (-want +got):\n%s", diff)
			}
			if got := u.one(t, "Service", "RuntimeDirectory"); "/run/"+got != filepath.Dir(lin.Socket) {
				t.Errorf("RuntimeDirectory=%s, but the default socket is %s", got, lin.Socket)
			}
		})
	}
}
