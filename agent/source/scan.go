package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// fileState is what was last reported for one payload path.
type fileState struct {
	user     string
	emitted  bool
	present  bool
	hash     string
	errMsg   string
	settleAt time.Time // set while invalid content waits out Settle
	// settleHash is the invalid content the wait is for: content that
	// differs when the wait is over is still being written, and waits again.
	settleHash string
}

// scan reads every payload file and reports those that changed. The
// machine-scope file is reported the first time even when absent.
func (w *Watcher) scan(ctx context.Context) bool {
	targets := map[string]string{w.machine: ""}
	for u := range w.users {
		targets[filepath.Join(w.cfg.Dir, u, w.cfg.Domain+".plist")] = u
	}
	for p, st := range w.files {
		if _, ok := targets[p]; !ok && st.emitted && (st.present || st.errMsg != "") {
			targets[p] = st.user // report that it is gone
		}
	}
	paths := make([]string, 0, len(targets))
	for p := range targets {
		if p != w.machine {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	paths = append([]string{w.machine}, paths...) // machine scope first
	for _, p := range paths {
		if !w.check(ctx, p, targets[p], false) {
			return false
		}
	}
	for p, st := range w.files {
		if _, ok := targets[p]; !ok && st.settleAt.IsZero() && !st.present && st.errMsg == "" {
			delete(w.files, p)
		}
	}
	if w.onScan != nil {
		w.onScan()
	}
	return true
}

// check reads one file and reports it if it changed. Invalid content is
// reported only by the final read at the end of its Settle wait, and only
// if it is what the wait began with; false once ctx ended during the send.
func (w *Watcher) check(ctx context.Context, path, user string, final bool) bool {
	snap, invalid := w.read(path, user)
	st := w.files[path]
	if st == nil {
		st = &fileState{user: user}
		w.files[path] = st
	}
	if invalid && (!final || snap.Hash != st.settleHash) {
		// Invalid content is reported once it has stayed the same for
		// Settle: a new wait starts when none runs, and when the wait ends
		// on other content than it began with (a write landed meanwhile).
		if st.settleAt.IsZero() || final {
			st.settleAt, st.settleHash = w.cfg.Clock.Now().Add(w.cfg.Settle), snap.Hash
			w.armSettle()
		}
		return true
	}
	st.settleAt, st.settleHash = time.Time{}, ""
	if !w.differs(st, snap, path == w.machine) {
		return true
	}
	select {
	case w.out <- snap:
	case <-ctx.Done():
		return false
	}
	st.emitted, st.present, st.hash, st.errMsg = true, snap.Present, snap.Hash, errString(snap.Err)
	w.cfg.Logger.Debug("payload file changed", "path", path, "present", snap.Present, "hash", snap.Hash, "err", snap.Err)
	return true
}

// differs says whether snap must be reported given what was reported
// before. A file never reported is reported once it exists, or at once
// when always (the machine-scope file, so the first scan says "absent").
func (w *Watcher) differs(st *fileState, snap Snapshot, always bool) bool {
	if !st.emitted {
		return always || snap.Present || snap.Err != nil
	}
	return st.present != snap.Present || st.hash != snap.Hash || st.errMsg != errString(snap.Err)
}

// read reads one payload file into a Snapshot; invalid is true when the
// content was read but failed Valid.
func (w *Watcher) read(path, user string) (snap Snapshot, invalid bool) {
	snap = Snapshot{Path: path, User: user}
	data, err := w.cfg.Read(path)
	switch {
	case err == nil:
		sum := sha256.Sum256(data)
		snap.Present, snap.Data, snap.Hash = true, data, hex.EncodeToString(sum[:])
		if w.cfg.Valid != nil {
			if verr := w.cfg.Valid(data); verr != nil {
				snap.Err = fmt.Errorf("check %s: %w: %w", path, ErrInvalid, verr)
				invalid = true
			}
		}
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		// Absent, or its folder is gone or is not a folder.
	default:
		snap.Present = true
		snap.Err = fmt.Errorf("read managed preferences: %w", err)
	}
	return snap, invalid
}

// armSettle starts the settle timer for the earliest waiting file unless it
// runs already (new waits end later than running ones).
func (w *Watcher) armSettle() {
	if w.settle != nil {
		return
	}
	var next time.Time
	for _, st := range w.files {
		if !st.settleAt.IsZero() && (next.IsZero() || st.settleAt.Before(next)) {
			next = st.settleAt
		}
	}
	if !next.IsZero() {
		w.settle = w.cfg.Clock.NewTimer(max(next.Sub(w.cfg.Clock.Now()), 0))
	}
}

// settled re-reads the files whose Settle wait is over and reports them,
// invalid or not.
func (w *Watcher) settled(ctx context.Context) bool {
	now := w.cfg.Clock.Now()
	var due []string
	for p, st := range w.files {
		if !st.settleAt.IsZero() && !now.Before(st.settleAt) {
			due = append(due, p)
		}
	}
	slices.Sort(due)
	for _, p := range due {
		if !w.check(ctx, p, w.files[p].user, true) {
			return false
		}
	}
	w.armSettle()
	if w.onScan != nil {
		w.onScan()
	}
	return true
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
