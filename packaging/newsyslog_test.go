package packaging

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/platform"
)

// TestNewsyslogEntryRotatesTheDaemonLog checks the log rotation entry the pkg
// installs: it names the log the launchd plist writes, rotates by size
// only, and never compresses (launchd keeps the rotated file open, so a
// compressed copy would lose what the daemon writes after the rotation).
func TestNewsyslogEntryRotatesTheDaemonLog(t *testing.T) {
	data, err := os.ReadFile("macos/newsyslog.conf")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := platform.PathsFor("darwin")
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			entries = append(entries, strings.Fields(line))
		}
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1", len(entries))
	}
	// logfilename owner:group mode count size when flags
	e := entries[0]
	if len(e) != 7 {
		t.Fatalf("entry %q: %d fields, want 7", e, len(e))
	}
	if want := filepath.Join(paths.LogDir, "rekey.log"); e[0] != want {
		t.Errorf("log %s, want %s (the plist's StandardOutPath)", e[0], want)
	}
	if e[1] != "root:wheel" || e[2] != "644" {
		t.Errorf("owner %s mode %s, want root:wheel 644", e[1], e[2])
	}
	if n, err := strconv.Atoi(e[3]); err != nil || n < 1 {
		t.Errorf("count %q: want a positive number of old files", e[3])
	}
	if kib, err := strconv.Atoi(e[4]); err != nil || kib < 1024 {
		t.Errorf("size %q KiB: want at least 1 MiB", e[4])
	}
	if e[5] != "*" {
		t.Errorf("when %q: want * (size only)", e[5])
	}
	if strings.ContainsAny(e[6], "JZXY") || !strings.Contains(e[6], "N") {
		t.Errorf("flags %q: want N (no process to signal) and no compression", e[6])
	}
}
