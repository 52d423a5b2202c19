package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rekeyd/rekey/agent"
)

// The idle benchmark runs the agent alone in a child process (this test
// binary, re-executed), so that what it measures is the agent and not the
// test's harness or the fake of Apple.
const (
	envIdleChild = "REKEY_TEST_IDLE_CHILD" // the state folder; prefs, passphrase and socket sit beside it
)

// idleChild runs an agent on the parent's folders until SIGTERM.
func idleChild(dir string) int {
	a, err := agent.New(agent.Config{PrefsDir: dir + "/managed", StateDir: dir + "/state", PassphraseFile: dir + "/passphrase",
		Socket: dir + "/s.sock", Version: "idle-child", Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle child:", err)
		return 2
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "idle child:", err)
		return 1
	}
	return 0
}
