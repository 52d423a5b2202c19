package packaging

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/platform"
	"howett.net/plist"
)

// newsyslogEntries parses the entry file the pkg installs: one field list per
// line that is not blank or a comment.
func newsyslogEntries(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile("macos/newsyslog.conf")
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			entries[f[0]] = f
		}
	}
	return entries
}

// checkSizeRotation checks the fields every entry shares:
// logfilename owner:group mode count size when flags.
func checkSizeRotation(t *testing.T, e []string) {
	t.Helper()
	if e[1] != "root:wheel" || e[2] != "640" {
		t.Errorf("%s: owner %s mode %s, want root:wheel 640", e[0], e[1], e[2])
	}
	if n, err := strconv.Atoi(e[3]); err != nil || n < 1 {
		t.Errorf("%s: count %q: want a positive number of old files", e[0], e[3])
	}
	if kib, err := strconv.Atoi(e[4]); err != nil || kib < 1024 {
		t.Errorf("%s: size %q KiB: want at least 1 MiB", e[0], e[4])
	}
	if e[5] != "*" {
		t.Errorf("%s: when %q: want * (size only)", e[0], e[5])
	}
}

// TestNewsyslogEntrySignalsTheAgent: the agent's own log (the default of
// `rekey run --log-file` as root) is rotated by size, and newsyslog sends
// SIGHUP to the pid in the default --pid-file so the agent reopens the path;
// without the signal the agent would keep writing to the renamed file.
// newsyslog.conf splits fields at whitespace, so the pid file's path must
// hold none.
func TestNewsyslogEntrySignalsTheAgent(t *testing.T) {
	paths, err := platform.PathsFor("darwin")
	if err != nil {
		t.Fatal(err)
	}
	entries := newsyslogEntries(t)
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2 (the agent's log and launchd's stderr file)", len(entries))
	}
	e, ok := entries[paths.LogFile]
	if !ok {
		t.Fatalf("no entry for the agent's log %s", paths.LogFile)
	}
	// logfilename owner:group mode count size when flags pid_file sig_num
	if len(e) != 9 {
		t.Fatalf("entry %q: %d fields, want 9", e, len(e))
	}
	checkSizeRotation(t, e)
	if e[6] != "-" {
		t.Errorf("flags %q: want - (a signal, no compression)", e[6])
	}
	if e[7] != paths.PIDFile || strings.ContainsAny(paths.PIDFile, " \t") {
		t.Errorf("pid file %q, want %q without whitespace", e[7], paths.PIDFile)
	}
	if e[8] != "1" {
		t.Errorf("signal %q, want 1 (SIGHUP, which makes the agent reopen its log)", e[8])
	}
}

// TestNewsyslogEntryRotatesLaunchdStderr: the file the launchd plist names
// as StandardErrorPath is rotated by size with no signal (launchd reopens it
// at each start, and the running agent writes its log elsewhere).
func TestNewsyslogEntryRotatesLaunchdStderr(t *testing.T) {
	data, err := platform.ServiceFile("darwin", platform.ServiceSpec{Executable: platform.PackagedExecutableDarwin})
	if err != nil {
		t.Fatal(err)
	}
	var job struct{ StandardOutPath, StandardErrorPath string }
	if _, err := plist.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	if job.StandardOutPath != "" || job.StandardErrorPath == "" {
		t.Fatalf("launchd plist: StandardOutPath %q, StandardErrorPath %q; want only the stderr file", job.StandardOutPath, job.StandardErrorPath)
	}
	stderrPath := job.StandardErrorPath
	e, ok := newsyslogEntries(t)[stderrPath]
	if !ok {
		t.Fatalf("no entry for launchd's StandardErrorPath %s", stderrPath)
	}
	if len(e) != 7 {
		t.Fatalf("entry %q: %d fields, want 7", e, len(e))
	}
	checkSizeRotation(t, e)
	if e[6] != "N" {
		t.Errorf("flags %q: want N (no process to signal)", e[6])
	}
}
