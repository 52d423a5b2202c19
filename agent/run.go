package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/source"
	"github.com/rekeyd/rekey/platform"
)

// Run recovers interrupted work, then watches the payloads and serves the
// local API until ctx ends. The step in progress when ctx ends is finished
// (or left at a recorded step that the next start resumes) before Run returns.
func (a *Agent) Run(ctx context.Context) error {
	paceGC()
	// Recovery finishes even when ctx ends meanwhile: a stop request right
	// after start is not a recovery failure.
	if err := a.recover(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	trust := a.cfg.Trust
	trust.MaxSize = payload.MaxFileSize
	w, err := source.New(source.Config{
		Dir: a.cfg.PrefsDir, Domain: a.cfg.Domain, UserPrefs: a.cfg.UserPrefs,
		Read:     func(p string) ([]byte, error) { return platform.ReadTrusted(p, trust) },
		Valid:    func(b []byte) error { _, err := payload.Parse(b); return err },
		Debounce: a.cfg.Debounce, Settle: a.cfg.Settle, Rescan: a.cfg.Rescan,
		Logger: a.log,
	})
	if err != nil {
		return fmt.Errorf("watch payloads: %w", err)
	}
	a.watcher.Store(w)
	ctx, cancel := context.WithCancel(ctx)
	// Run returns only once the syncs it started have stopped: none of them
	// touches the store after Run, so Close never races a write.
	defer func() { cancel(); a.syncs.wg.Wait() }()
	a.syncs.bg = ctx
	errc := make(chan error, 2)
	snaps := make(chan source.Snapshot)
	go func() { errc <- w.Run(ctx, snaps) }()
	stopAPI, err := a.serveAPI(ctx)
	if err != nil {
		return err
	}
	defer stopAPI()
	removeStatusTemps(a.cfg.StatusFile)
	done := make(chan struct{})
	go func() { defer close(done); a.statusLoop(ctx) }()
	defer func() { <-done }()
	a.syncs.wg.Go(func() { a.syncs.loop(ctx) })

	a.log.Info("agent running", "prefs", a.cfg.PrefsDir, "domain", a.cfg.Domain, "state", a.cfg.StateDir, "socket", a.cfg.Socket)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("watch payloads: %w", err)
			}
			return nil
		case snap := <-snaps:
			withExtraSlot(func() { a.handleSnapshot(context.WithoutCancel(ctx), snap) })
		case <-a.retryKick:
		case <-retry.C:
			a.retryDue(context.WithoutCancel(ctx))
		}
		retry.Reset(a.nextRetry())
	}
}

// removeStatusTemps deletes the temporary files of status-file writes that a
// kill or power loss interrupted (platform.WriteFileAtomic names them
// .<name>.tmp-*). Only the agent writes the status file, and it has not
// started writing yet.
func removeStatusTemps(path string) {
	temps, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	for _, p := range temps {
		os.Remove(p)
	}
}

// nextRetry is how long until the earliest transient failure is due.
func (a *Agent) nextRetry() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := time.Hour
	now := a.cfg.Now()
	for _, w := range a.waiting {
		if w.transient {
			next = min(next, max(w.nextTry.Sub(now), 0))
		}
	}
	return next
}

// retryDue attempts every transient failure whose time has come.
func (a *Agent) retryDue(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	for id, w := range a.waiting {
		if w.transient && !now.Before(w.nextTry) {
			w.transient = false
			if w.unrecorded {
				w.unrecorded = false
				a.recordEntry(ctx, w.source, w.settings, w.entry, nil)
				continue
			}
			if err := a.attempt(ctx, id, attemptInput{}); err != nil {
				a.log.Debug("retry import", "import", id, "err", err)
			}
		}
	}
}

// Rescan asks for a full re-read of the managed preferences (SIGHUP).
func (a *Agent) Rescan() {
	if w := a.watcher.Load(); w != nil {
		w.Rescan()
	}
}
