// Package agent is rekey's domain: it turns managed-preference payloads into
// imports, decides between adding and updating a credential, and runs the
// failure-safe rotation against the store.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/source"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/platform/clock"
	"github.com/rekeyd/rekey/store"
)

// Config is everything the agent needs. Every path is explicit so that tests,
// the demo and unprivileged runs use a temporary folder.
type Config struct {
	PrefsDir       string // managed-preferences folder
	Domain         string // payload file is <PrefsDir>/<Domain>.plist
	UserPrefs      bool   // also watch <PrefsDir>/<user>/<Domain>.plist
	StateDir       string
	Socket         string // "" runs without the local API
	StatusFile     string // "" means <StateDir>/status.plist
	PassphraseFile string
	AdminGroup     string
	MaxWorkFactor  int
	Trust          platform.TrustRule // for the payload, passphrase and folders

	Debounce time.Duration
	Settle   time.Duration
	Rescan   time.Duration

	// Checker runs auth checks and confirmations; nil uses Apple's endpoints.
	Checker Checker
	// Backoff gives the wait before retry number n (1-based) of a failed
	// import whose failure may pass. Nil: 30 s doubling to 1 h.
	Backoff func(n int) time.Duration
	// BusyTimeout is how long a store write waits for a lock another process
	// holds before the attempt fails and is retried (default 5 s).
	BusyTimeout time.Duration
	// SyncTicks, when set, replaces the 10-minute ticker on which the agent
	// looks for tenants due a sync and rotations waiting for confirmation
	// (tests send ticks and move Now instead of waiting).
	SyncTicks <-chan time.Time
	// AppleRequestsPerMinute is the ceiling on requests to Apple per tenant
	// when the payload sets no RequestsPerMinute; 0 adapts to Apple's rate
	// limit (docs/apple.md). The demo and tests against a local fake raise it.
	AppleRequestsPerMinute int
	// AppleSleep waits between retries of a request to Apple (syncs, and
	// auth checks when Checker is nil). Nil: a real timer that honours ctx.
	AppleSleep func(ctx context.Context, d time.Duration) error

	// Clock tells the time to the agent, its store and its Apple client
	// (default: the real clock). Embedded, so a.cfg.Now() reads it.
	clock.Clock
	Logger  *slog.Logger
	Version string
}

func (c *Config) setDefaults() {
	if c.Domain == "" {
		c.Domain = platform.Domain
	}
	if c.MaxWorkFactor == 0 {
		c.MaxWorkFactor = payload.DefaultWorkFactor
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Backoff == nil {
		c.Backoff = defaultBackoff
	}
	if c.Trust.Owners == nil {
		c.Trust = platform.DefaultTrust()
	}
	if c.StatusFile == "" {
		c.StatusFile = c.StateDir + "/status.plist"
	}
}

func defaultBackoff(n int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// Agent is one running rekey agent. Every change to imports and rotations
// happens under mu, one at a time, so decisions never race each other.
type Agent struct {
	cfg     Config
	st      *store.Store
	lock    *platform.Lock // one agent per state folder, held until Close
	log     *slog.Logger
	hub     api.Hub // fans events out to API subscribers
	started time.Time

	mu      sync.Mutex
	waiting map[string]*waiting // imports whose entry is in a payload now, by ImportID
	sources map[string]*sourceState
	// released holds credentials known to be local, so a file change does
	// not read every past import's credential again.
	released map[string]bool

	srcInfo sync.Map // payload path → api.SourceInfo: what Status shows, read without waiting for mu
	status  statusFlight[*statusSnap]
	// snap is the prepared status; statusGen counts changes, shownGen the
	// changes made known; asked is set by each caller of the status and
	// cleared by the build it makes happen (statussnap.go).
	snap      atomic.Pointer[statusSnap]
	building  atomic.Pointer[snapBuild]
	statusGen atomic.Uint64
	shownGen  atomic.Uint64
	asked     atomic.Bool

	syncs *syncer

	watcher    atomic.Pointer[source.Watcher]
	statusKick chan struct{}
	retryKick  chan struct{}
}

// New opens the store and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if cfg.StateDir == "" || cfg.PrefsDir == "" {
		return nil, errors.New("new agent: state and managed-preferences folders are required")
	}
	if cfg.MaxWorkFactor < 1 || cfg.MaxWorkFactor > payload.MaxWorkFactorLimit {
		return nil, fmt.Errorf("new agent: --max-work-factor %d is out of range; use 1 to %d", cfg.MaxWorkFactor, payload.MaxWorkFactorLimit)
	}
	lock, err := lockState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(cfg.StateDir, store.Options{Clock: cfg.Clock, BusyTimeout: cfg.BusyTimeout})
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("open store: %w", err)
	}
	a := &Agent{
		cfg:        cfg,
		st:         st,
		lock:       lock,
		log:        cfg.Logger,
		started:    cfg.Now(),
		waiting:    make(map[string]*waiting),
		sources:    make(map[string]*sourceState),
		released:   make(map[string]bool),
		statusKick: make(chan struct{}, 1),
		retryKick:  make(chan struct{}, 1),
	}
	ap := newAppleBackend(a.cfg.Clock, a.cfg.AppleSleep)
	if a.cfg.Checker == nil {
		a.cfg.Checker = ap
	}
	a.syncs = &syncer{st: st, log: a.log, now: a.cfg.Now, ticks: cfg.SyncTicks, checker: a.cfg.Checker, apple: ap,
		publish: a.publish, progress: a.progress, confirmed: a.confirmed,
		bg: context.Background(), running: make(map[string]bool),
		perMinute: cfg.AppleRequestsPerMinute, budgets: make(map[string]tenantBudget)}
	return a, nil
}

// Store gives read access to the agent's store; only the agent writes to it.
func (a *Agent) Store() *store.Store { return a.st }

// Close closes the store and releases the state folder's lock. Call it after
// Run has returned.
func (a *Agent) Close() error {
	a.hub.Close()
	err := a.st.Close()
	a.lock.Release()
	return err
}

// A start that finds the state folder locked tries again lockRetries times,
// lockRetryWait apart, before it reports another agent.
const (
	lockRetries   = 5
	lockRetryWait = 20 * time.Millisecond
)

// ErrAnotherAgent: another agent runs on the same state folder.
var ErrAnotherAgent = errors.New("another rekey agent is running on the state folder")

// lockState checks the state folder (owned by the agent's uid, not writable
// by others) and takes its lock. It runs before anything else touches the
// folder — recovery, migrations, the socket — so that a second agent on the
// same folder leaves it exactly as it found it.
func lockState(dir string) (*platform.Lock, error) {
	if err := platform.PrepareStateDir(dir, euid()); err != nil {
		return nil, fmt.Errorf("check state folder: %w", err)
	}
	path := filepath.Join(dir, store.LockFile)
	lock, err := platform.LockExclusive(path)
	// `rekey doctor` takes the lock shared for an instant to see whether it
	// is free: a start that meets it tries again before giving up.
	for try := 0; errors.Is(err, platform.ErrLocked) && try < lockRetries; try++ {
		time.Sleep(lockRetryWait)
		lock, err = platform.LockExclusive(path)
	}
	var held *platform.LockedError
	if errors.As(err, &held) {
		// held names the pid, or says "another process" when the holder has
		// not recorded it yet.
		return nil, fmt.Errorf("%w: %v; stop it first (rekey stop) or pass another --state-dir", ErrAnotherAgent, held)
	}
	if err != nil {
		return nil, fmt.Errorf("lock state folder: %w", err)
	}
	return lock, nil
}

// kick wakes a goroutine waiting on ch without blocking.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// euid is the agent's own uid, allowed on the local API.
var euid = os.Geteuid
