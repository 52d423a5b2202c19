// Package source watches the managed-preferences folders and reports each
// content change of the payload files as a Snapshot, without parsing them.
package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Default timings; see docs/watching.md.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultSettle   = 500 * time.Millisecond
	DefaultRescan   = 5 * time.Minute
)

var (
	// ErrConfig is wrapped by New for a Config it cannot run with.
	ErrConfig = errors.New("invalid source configuration")
	// ErrInvalid is wrapped in Snapshot.Err when a file is readable but its
	// content failed Config.Valid even after Settle.
	ErrInvalid = errors.New("content is not a valid payload (push a profile whose payload is a well-formed plist)")
	// ErrRunning is returned by Run when the Watcher is already running or has run.
	ErrRunning = errors.New("watcher already ran (make a new one with source.New)")
)

// Config says what to watch and how.
type Config struct {
	Dir       string // managed-preferences folder (machine scope), absolute
	Domain    string // the payload file is <Domain>.plist
	UserPrefs bool   // also <Dir>/<user>/<Domain>.plist for every user subfolder (macOS)
	// Read reads a payload file: platform.ReadTrusted in production. An
	// error wrapping fs.ErrNotExist means the file is absent.
	Read func(path string) ([]byte, error)
	// Valid, optional, is a quick check that content is complete (the plist
	// parses). Invalid content is re-read after Settle before it is
	// reported, since a file written in place may be caught half-written.
	// Its error must not quote the content.
	Valid    func(data []byte) error
	Debounce time.Duration // quiet time after the first event before reading; default 100ms
	Settle   time.Duration // wait before reporting invalid content; default 500ms
	Rescan   time.Duration // periodic full rescan; default 5m
	Clock    Clock         // default: the real clock
	Logger   *slog.Logger  // default: slog.Default()
}

// Snapshot is the state of one payload file after a change.
type Snapshot struct {
	Path    string
	User    string // "" for machine scope
	Present bool   // false: the file is gone (or its folder is)
	Data    []byte // the content when it could be read
	Hash    string // hex SHA-256 of Data; "" when nothing was read
	Err     error  // read, trust or validity problem; never quotes the content
}

// Watcher reports content changes of the payload files. Make one with New.
type Watcher struct {
	cfg     Config
	machine string // <Dir>/<Domain>.plist
	rescan  chan struct{}
	ran     atomic.Bool

	// Owned by the Run goroutine.
	fw       *fsnotify.Watcher
	watched  map[string]os.FileInfo // watched folder → what it was when added
	users    map[string]bool        // user subfolders of Dir seen at the last sync
	files    map[string]*fileState  // payload path → last emitted state
	debounce Timer
	settle   Timer
	out      chan<- Snapshot
	onScan   func() // test hook: called after each pass over the files
}

// New checks cfg, fills in defaults and returns a Watcher ready to Run.
func New(cfg Config) (*Watcher, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	return &Watcher{
		cfg:     cfg,
		machine: filepath.Join(cfg.Dir, cfg.Domain+".plist"),
		rescan:  make(chan struct{}, 1),
		watched: map[string]os.FileInfo{},
		users:   map[string]bool{},
		files:   map[string]*fileState{},
	}, nil
}

func checkConfig(cfg *Config) error {
	switch {
	case cfg.Dir == "" || !filepath.IsAbs(cfg.Dir):
		return fmt.Errorf("%w: folder %q is not an absolute path: pass the managed-preferences folder, e.g. %q",
			ErrConfig, cfg.Dir, "/Library/Managed Preferences")
	case cfg.Domain == "" || cfg.Domain == "." || cfg.Domain == ".." || strings.ContainsAny(cfg.Domain, `/\`):
		return fmt.Errorf("%w: domain %q is not a file name: pass a preference domain such as %q",
			ErrConfig, cfg.Domain, "com.github.rekeyd.rekey")
	case cfg.Read == nil:
		return fmt.Errorf("%w: Read is nil: pass platform.ReadTrusted with the managed-preferences trust rule", ErrConfig)
	case cfg.Debounce < 0 || cfg.Settle < 0 || cfg.Rescan < 0:
		return fmt.Errorf("%w: negative Debounce, Settle or Rescan: pass 0 for the default or a positive duration", ErrConfig)
	}
	cfg.Dir = filepath.Clean(cfg.Dir)
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// Rescan asks a running Watcher for a full rescan now (e.g. on SIGHUP).
// It never blocks; requests made while one is pending are merged.
func (w *Watcher) Rescan() {
	select {
	case w.rescan <- struct{}{}:
	default:
	}
}

// Run scans every payload file once, reporting each present file and the
// machine-scope file even when absent, then reports changes until ctx ends.
// Each Snapshot differs from the previous one of its path in presence, hash
// or error. Run returns nil when ctx ends; a Watcher runs once.
func (w *Watcher) Run(ctx context.Context, out chan<- Snapshot) error {
	if !w.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("start file watcher: %w", err)
	}
	w.fw, w.out = fw, out
	defer func() {
		if w.fw != nil {
			w.fw.Close()
		}
	}()
	ticker := w.cfg.Clock.NewTicker(w.cfg.Rescan)
	defer ticker.Stop()
	defer func() {
		for _, t := range []Timer{w.debounce, w.settle} {
			if t != nil {
				t.Stop()
			}
		}
	}()

	if !w.full(ctx) {
		return nil
	}
	for {
		if !w.step(ctx, ticker) {
			return nil
		}
	}
}

// step waits for one thing to happen and handles it; false once ctx ended.
func (w *Watcher) step(ctx context.Context, ticker Ticker) bool {
	select {
	case <-ctx.Done():
		return false
	case ev, ok := <-w.watchEvents():
		if !ok {
			return w.restart(ctx)
		}
		return w.events(ctx, ev)
	case err, ok := <-w.watchErrors():
		if !ok {
			return w.restart(ctx)
		}
		// Events may be lost either way: re-add every watch and re-read.
		if errors.Is(err, fsnotify.ErrEventOverflow) {
			w.cfg.Logger.Warn("file events were lost; rescanning", "dir", w.cfg.Dir)
		} else {
			w.cfg.Logger.Warn("file watch error; re-establishing watches and rescanning", "dir", w.cfg.Dir, "err", err)
		}
		return w.full(ctx)
	case <-timerC(w.debounce):
		w.debounce = nil
		return w.pass(ctx)
	case <-timerC(w.settle):
		w.settle = nil
		return w.settled(ctx)
	case <-ticker.C():
		return w.full(ctx)
	case <-w.rescan:
		return w.full(ctx)
	}
}

// arm starts the debounce window unless it is already running: the files
// are read once per window however many events arrive in it.
func (w *Watcher) arm() {
	if w.debounce == nil {
		w.debounce = w.cfg.Clock.NewTimer(w.cfg.Debounce)
	}
}

func (w *Watcher) watchEvents() <-chan fsnotify.Event {
	if w.fw == nil {
		return nil
	}
	return w.fw.Events
}

func (w *Watcher) watchErrors() <-chan error {
	if w.fw == nil {
		return nil
	}
	return w.fw.Errors
}

// restart replaces an fsnotify watcher whose channels were closed under us.
// If no new one can be made, the periodic rescan carries on alone and the
// next full rescan tries again.
func (w *Watcher) restart(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if w.fw != nil {
		w.fw.Close()
		w.fw = nil
	}
	w.watched = map[string]os.FileInfo{}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.cfg.Logger.Error("restart file watcher; relying on the periodic rescan", "err", err)
		return w.scan(ctx)
	}
	w.fw = fw
	return w.full(ctx)
}

// full re-establishes every watch and reads every file.
func (w *Watcher) full(ctx context.Context) bool {
	if w.fw == nil {
		return w.restart(ctx)
	}
	w.syncWatches(true)
	return w.scan(ctx)
}

// pass follows a debounce window: watches catch up with the folders, then
// every file is read.
func (w *Watcher) pass(ctx context.Context) bool {
	w.syncWatches(false)
	return w.scan(ctx)
}
