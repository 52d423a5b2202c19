package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
)

// loadPaths are the reads every load client repeats.
var loadPaths = []string{"/v1/status", "/v1/credentials", "/v1/tenants", "/v1/imports", "/v1/rotations", "/v1/health"}

// loadClients hammers the API from n clients until stop closes or each has
// made iters rounds of loadPaths; every answer must be 200 with valid JSON.
type loadClients struct {
	answers atomic.Int64
	bad     atomic.Int64
	mu      sync.Mutex
	first   string
	wg      sync.WaitGroup
}

func (lc *loadClients) run(socket string, n, iters int, stop <-chan struct{}) {
	for range n {
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			hc := unixHTTP(socket)
			defer hc.CloseIdleConnections()
			for range iters {
				for _, p := range loadPaths {
					select {
					case <-stop:
						return
					default:
					}
					if err := get(hc, p); err != nil {
						lc.fail(err)
					} else {
						lc.answers.Add(1)
					}
				}
			}
		}()
	}
}

func (lc *loadClients) fail(err error) {
	lc.bad.Add(1)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.first == "" {
		lc.first = err.Error()
	}
}

// get fetches path and checks the answer is 200 with a JSON body.
func get(hc *http.Client, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://rekey"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !json.Valid(body) {
		return fmt.Errorf("GET %s: status %d, type %q, valid JSON %v", path, resp.StatusCode, resp.Header.Get("Content-Type"), json.Valid(body))
	}
	return nil
}

// subscriber is one /v1/events client; a slow one reads a single event per
// tick until released.
type subscriber struct {
	events int
	ending error // the error that ended its stream
}

func subscribe(t testing.TB, socket string, tick <-chan struct{}, release <-chan struct{}, out *subscriber, wg *sync.WaitGroup) {
	t.Helper()
	cl := api.NewClient(socket)
	s, err := cl.Events(context.Background())
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cl.Close()
		defer s.Close()
		for {
			if tick != nil {
				select {
				case <-tick:
				case <-release:
					tick = nil
				}
			}
			if _, err := s.Next(); err != nil {
				out.ending = err
				return
			}
			out.events++
		}
	}()
}

// TestLoadClientsAndSubscribers runs rotations while 200 API clients read in
// loops and 50 event subscribers follow, 10 of them too slow to keep up:
// every answer is valid, every rotation completes, slow subscribers are
// dropped rather than stalling the agent, and memory stays flat.
// REKEY_LOAD_ROTATIONS and REKEY_LOAD_ITERATIONS scale it (make soak).
func TestLoadClientsAndSubscribers(t *testing.T) {
	const nClients, nSubs, nSlow = 200, 50, 10
	rotations := envInt(t, "REKEY_LOAD_ROTATIONS", short(30, 12))
	iters := envInt(t, "REKEY_LOAD_ITERATIONS", short(3, 1))
	l := newLayout(t)
	w := newWorld(t, l, 1)
	c := startChild(t, l)
	obs := follow(t, l.socket) // the first subscriber: follows the rotations
	k := w.key("")
	w.entries = []payload.PayloadEntry{{ImportID: "load-add", Intent: payload.IntentAdd, Name: "load", Ciphertext: w.seal("load", k, testPassphrase)}}
	w.write()
	obs.waitState("load-add", "applied")

	subs := make([]subscriber, nSubs-1)
	ticks := make([]chan struct{}, nSlow)
	release := make(chan struct{})
	var subWG sync.WaitGroup
	for i := range subs {
		var tick chan struct{}
		if i < nSlow {
			ticks[i] = make(chan struct{}, 1)
			tick = ticks[i]
		}
		subscribe(t, l.socket, tick, release, &subs[i], &subWG)
	}
	stop := make(chan struct{})
	var lc loadClients
	lc.run(l.socket, nClients, iters, stop)

	var rss []int64
	var slowest time.Duration
	start := time.Now()
	for i := range rotations {
		began := time.Now()
		id := fmt.Sprintf("load-rot-%04d", i)
		name := fmt.Sprintf("load %d", i)
		w.entries = []payload.PayloadEntry{{ImportID: id, Intent: payload.IntentUpdate, Target: k.ClientID, Name: name,
			Ciphertext: w.seal(name, w.key(k.ClientID), testPassphrase)}}
		w.write()
		obs.waitState(id, "applied") // fails the test if a rotation cannot finish within a minute
		slowest = max(slowest, time.Since(began))
		for _, tk := range ticks {
			select {
			case tk <- struct{}{}:
			default:
			}
		}
		if r, err := c.rss(); err == nil {
			rss = append(rss, r)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	lc.wg.Wait()
	close(release)
	obs.close()
	c.stop()
	waitGroup(t, &subWG, "event streams to end after the agent stopped")

	if n := lc.bad.Load(); n > 0 {
		t.Errorf("%d of %d answers were not 200 with valid JSON; first: %s", n, n+lc.answers.Load(), lc.first)
	}
	dropped, ended := 0, map[string]int{}
	for i, s := range subs {
		switch {
		case endedBy(s.ending, "events_dropped"):
			dropped++
			ended["events_dropped"]++
			if i >= nSlow {
				t.Logf("fast subscriber %d dropped after %d events", i, s.events)
			}
		case endedBy(s.ending, "shutting_down"):
			ended["shutting_down"]++
		default:
			ended[fmt.Sprint(s.ending)]++
		}
	}
	slowDropped, fastMin := 0, -1
	for i, s := range subs {
		switch {
		case i < nSlow && endedBy(s.ending, "events_dropped"):
			slowDropped++
		case i >= nSlow && (fastMin < 0 || s.events < fastMin):
			fastMin = s.events
		}
	}
	// A slow subscriber reads one event per rotation. Once the others have
	// seen more than its 256-event buffer plus a socket's worth of lines
	// (well under 2000 events), it must have been dropped, not waited for.
	if fastMin-rotations > 2000 && slowDropped < nSlow {
		t.Errorf("%d events went by but only %d of %d slow subscribers were dropped", fastMin, slowDropped, nSlow)
	}
	t.Logf("load: %d rotations in %s (slowest %s) under %d clients (%d answers) and %d subscribers (fast ones saw at least %d events); streams ended %v; slow subscribers dropped %d of %d",
		rotations, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), nClients, lc.answers.Load(), nSubs, fastMin, ended, slowDropped, nSlow)
	checkFlat(t, rss)
}

// checkFlat reports the child's RSS at the start, middle and end of the
// rotations and fails on unbounded growth: the end may not exceed twice the
// start plus 64 MiB, a generous bound that only a leak crosses.
func checkFlat(t *testing.T, rss []int64) {
	t.Helper()
	if len(rss) < 3 {
		t.Logf("memory: not measured (%v)", errNoProc)
		return
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	first, mid, last := rss[0], rss[len(rss)/2], rss[len(rss)-1]
	peak := first
	for _, r := range rss {
		peak = max(peak, r)
	}
	t.Logf("memory: agent RSS %.1f MiB at the first rotation, %.1f MiB at the middle, %.1f MiB at the end, peak %.1f MiB",
		mib(first), mib(mid), mib(last), mib(peak))
	if last > 2*first+64<<20 {
		t.Errorf("agent RSS grew from %.1f MiB to %.1f MiB over %d rotations", mib(first), mib(last), len(rss))
	}
}

// waitGroup waits for wg, failing the test after a minute.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}
