package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// A SIGKILL during a status-file write leaves WriteFileAtomic's temporary
// file behind (the soak found dozens after its kills); the next start
// removes them and leaves every other file alone.
func TestStartRemovesStatusTempsLeftByAKill(t *testing.T) {
	h := newHarness(t)
	h.stop()
	stale := filepath.Join(h.state, ".status.plist.tmp-1234567")
	other := filepath.Join(h.state, ".other.plist.tmp-1234567")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("half a status file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.start()
	// Cleanup happens before the agent reads any payload: once an import
	// is recorded, it is done.
	h.push(h.entry("Acme", payload.IntentAdd, "", h.key(""), testPassphrase))
	h.waitImport("", store.ImportApplied)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale status temp file still there after a restart: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not the status file's temp was touched: %v", err)
	}
}

// A stop asked for while the agent is still starting (SIGTERM right after
// launch) ends the run cleanly: recovery finishes instead of failing Run
// with "context canceled".
func TestRunStoppedBeforeItStartsReturnsNil(t *testing.T) {
	dir := t.TempDir()
	a, err := agent.New(agent.Config{PrefsDir: filepath.Join(dir, "managed"), StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := os.MkdirAll(filepath.Join(dir, "managed"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("run with a stop already asked for: %v", err)
	}
}
