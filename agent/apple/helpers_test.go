package apple_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/apple/appletest"
)

// laterClock is c moved by d.
type laterClock struct {
	c apple.Clock
	d time.Duration
}

func (l laterClock) Now() time.Time { return l.c.Now().Add(l.d) }

// clock is a settable clock shared by the client and the fake.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a fake Apple with one registered credential and a client
// whose waits are recorded instead of slept.
type fixture struct {
	srv    *appletest.Server
	key    appletest.Key
	cred   apple.Credential
	client *apple.Client
	clock  *clock
	budget *apple.Budget // fast enough that it never waits

	mu     sync.Mutex
	sleeps []time.Duration
}

func newFixture(t testing.TB, devices int) *fixture {
	t.Helper()
	f := &fixture{srv: appletest.New(), clock: &clock{t: time.Now().UTC().Truncate(time.Second)},
		budget: apple.NewBudget(1e12)}
	t.Cleanup(f.srv.Close)
	f.srv.SetClock(f.clock)
	f.srv.SetDevices(devices)
	key, err := f.srv.NewCredential(apple.ScopeBusiness)
	if err != nil {
		t.Fatal(err)
	}
	f.key = key
	f.cred = apple.Credential{ClientID: key.ClientID, KeyID: key.KeyID, Key: key.Private}
	f.client = &apple.Client{
		TokenURL:   f.srv.TokenURL(),
		APIBaseURL: f.srv.APIBaseURL(),
		Clock:      f.clock,
		Sleep:      f.sleep,
		Jitter:     func(time.Duration) time.Duration { return 0 },
	}
	return f
}

// newServer starts a fake closed when the test ends.
func newServer(tb testing.TB) *appletest.Server {
	srv := appletest.New()
	tb.Cleanup(srv.Close)
	return srv
}

// sleep records the wait and advances the shared clock instead of sleeping.
// Waits under a millisecond (a fast budget's pacing) are not recorded.
func (f *fixture) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	if d >= time.Millisecond {
		f.sleeps = append(f.sleeps, d)
	}
	f.mu.Unlock()
	f.clock.Add(d)
	return ctx.Err()
}

func (f *fixture) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sleeps)
}

// memSink is a test sink that keeps what a store would: the listed
// devices, each device's latest coverage read, and where the pass stands.
type memSink struct {
	mu        sync.Mutex
	devices   map[string]apple.Device
	order     []string // device ids in list order
	coverage  map[string]apple.DeviceCoverage
	state     apple.SyncState
	pages     int
	batches   int
	dupes     []string
	failAfter int // Coverage fails on batch number failAfter+1 (0 = never)
	failed    bool
}

var _ apple.Sink = (*memSink)(nil)

var errSinkFull = errors.New("sink: disk full")

func newSink() *memSink {
	return &memSink{devices: map[string]apple.Device{}, coverage: map[string]apple.DeviceCoverage{}}
}

func (s *memSink) Page(_ context.Context, ds []apple.Device, next string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if _, ok := s.devices[d.ID]; ok {
			s.dupes = append(s.dupes, d.ID)
		} else {
			s.order = append(s.order, d.ID)
		}
		s.devices[d.ID] = d
	}
	s.state = apple.SyncState{Cursor: next, Listed: next == ""}
	s.pages++
	return nil
}

func (s *memSink) Due(_ context.Context, n int) ([]apple.Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []apple.Device
	for _, id := range s.order {
		if _, ok := s.coverage[id]; !ok && len(out) < n {
			out = append(out, s.devices[id])
		}
	}
	return out, nil
}

func (s *memSink) Coverage(_ context.Context, batch []apple.DeviceCoverage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAfter > 0 && s.batches == s.failAfter && !s.failed {
		s.failed = true
		return errSinkFull
	}
	for _, c := range batch {
		s.coverage[c.DeviceID] = c
	}
	s.batches++
	return nil
}

func (s *memSink) records() int {
	n := 0
	for _, c := range s.coverage {
		n += len(c.Records)
	}
	return n
}

// checkComplete asserts the sink holds exactly the first n generated
// devices, each once, with all their coverage.
func (s *memSink) checkComplete(t *testing.T, n int) {
	t.Helper()
	if len(s.dupes) > 0 {
		t.Errorf("devices listed twice: %v", s.dupes[:min(5, len(s.dupes))])
	}
	if len(s.devices) != n {
		t.Errorf("sink holds %d devices, want %d", len(s.devices), n)
	}
	for i := range n {
		id := appletest.DeviceID(i)
		if _, ok := s.devices[id]; !ok {
			t.Fatalf("device %s missing", id)
		}
		c, ok := s.coverage[id]
		if !ok {
			t.Fatalf("coverage of %s missing", id)
		}
		if len(c.Records) != appletest.CoverageCount(i) || c.Failed {
			t.Fatalf("device %s has %d coverage records (failed %v), want %d", id, len(c.Records), c.Failed, appletest.CoverageCount(i))
		}
	}
	if got, want := s.records(), appletest.CoverageTotal(n); got != want {
		t.Errorf("sink holds %d coverage records, want %d", got, want)
	}
	if !s.state.Listed || s.state.Cursor != "" {
		t.Errorf("final state = %+v, want listed", s.state)
	}
}

// sync runs a pass from the sink's state with the fixture's budget.
func (f *fixture) sync(ctx context.Context, s *memSink, progress func(apple.Progress)) error {
	return f.client.Sync(ctx, f.cred, f.budget, s.state, s, progress)
}

func durations(ds ...int) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = time.Duration(d) * time.Second
	}
	return out
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%v", err)
}

// decodeJWT returns a JWT's header and claims without verifying it.
func decodeJWT(t *testing.T, s string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}
