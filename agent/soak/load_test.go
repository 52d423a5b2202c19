package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// subscriber is one /v1/events client; a slow one reads two lines per tick
// through tiny buffers, so the socket drains only as fast as it reads,
// until released.
type subscriber struct {
	events int
	ending error // the error that ended its stream
}

func subscribe(t testing.TB, socket string, tick <-chan struct{}, release <-chan struct{}, out *subscriber, wg *sync.WaitGroup) {
	t.Helper()
	if tick == nil {
		followFast(t, socket, out, wg)
		return
	}
	hc := unixHTTP(socket)
	hc.Transport.(*http.Transport).ReadBufferSize = 64
	resp, err := hc.Get("http://rekey/v1/events")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: status %d", resp.StatusCode)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer hc.CloseIdleConnections()
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 16)
		for n := 0; ; n++ {
			if tick != nil && n%2 == 0 {
				select {
				case <-tick:
				case <-release:
					tick = nil
				}
			}
			line, err := br.ReadBytes('\n')
			if err != nil {
				out.ending = fmt.Errorf("read events: %w", err)
				return
			}
			if out.ending = errorLine(line); out.ending != nil {
				return
			}
			out.events++
		}
	}()
}

// errorLine decodes a stream line: nil for an event, the stream's final
// error for an error line, a decoding error for anything else.
func errorLine(line []byte) error {
	var probe struct {
		Error *api.ErrorDetail `json:"error"`
		Kind  string           `json:"kind"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		return fmt.Errorf("decode event line: %w", err)
	}
	if probe.Error != nil {
		return &api.APIError{Status: http.StatusOK, Code: probe.Error.Code, Message: probe.Error.Message}
	}
	if probe.Kind == "" {
		return fmt.Errorf("event line without a kind: %s", line)
	}
	return nil
}

// followFast reads events as fast as they come with the API client.
func followFast(t testing.TB, socket string, out *subscriber, wg *sync.WaitGroup) {
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
	var slowWG, fastWG sync.WaitGroup
	for i := range subs {
		if i < nSlow {
			ticks[i] = make(chan struct{}, 1)
			subscribe(t, l.socket, ticks[i], release, &subs[i], &slowWG)
		} else {
			subscribe(t, l.socket, nil, nil, &subs[i], &fastWG)
		}
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
	// A slow subscriber reads two events per rotation. Once more than its
	// 256-event buffer plus a socket's worth of lines (well under 2000
	// events) has gone by, it must have been dropped rather than waited
	// for: released, it reads to its events_dropped line and ends.
	expectDrop := obs.seen-2*rotations > 2000
	if expectDrop {
		waitGroup(t, &slowWG, "slow subscribers to reach their events_dropped line")
	}
	obs.close()
	c.stop()
	waitGroup(t, &slowWG, "slow event streams to end after the agent stopped")
	waitGroup(t, &fastWG, "event streams to end after the agent stopped")

	if n := lc.bad.Load(); n > 0 {
		t.Errorf("%d of %d answers were not 200 with valid JSON; first: %s", n, n+lc.answers.Load(), lc.first)
	}
	ended, fastMin := tallyEndings(t, subs[:nSlow], subs[nSlow:], expectDrop)
	t.Logf("load: %d rotations in %s (slowest %s) under %d clients (%d answers) and %d subscribers (fast ones saw at least %d events); streams ended: %v",
		rotations, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), nClients, lc.answers.Load(), nSubs, fastMin, ended)
	checkFlat(t, rss)
}

// tallyEndings counts how the event streams ended and fails on an ending
// that is not one of: the events_dropped line, the shutting_down line, or a
// stream cut because a write to a subscriber that had stopped reading timed
// out (nothing, not even the events_dropped line, can reach it then). When
// drops were expected, no slow subscriber may have lasted until shutdown.
func tallyEndings(t *testing.T, slow, fast []subscriber, expectDrop bool) (ended map[string]int, fastMin int) {
	t.Helper()
	ended, fastMin = map[string]int{}, -1
	all := make([]subscriber, 0, len(slow)+len(fast))
	for i, s := range append(append(all, slow...), fast...) {
		speed := "fast"
		if i < len(slow) {
			speed = "slow"
		}
		var how string
		switch {
		case endedBy(s.ending, "events_dropped"):
			how = "events_dropped line"
		case endedBy(s.ending, "shutting_down"):
			how = "shutting_down line"
		case errors.Is(s.ending, io.ErrUnexpectedEOF) || errors.Is(s.ending, io.EOF):
			how = "cut after a write timeout"
		default:
			t.Errorf("%s subscriber %d: stream ended by %v", speed, i, s.ending)
			how = "other"
		}
		ended[speed+": "+how]++
		if speed == "slow" && expectDrop && how == "shutting_down line" {
			t.Errorf("slow subscriber %d was kept until the agent stopped (%d events read)", i, s.events)
		}
		if speed == "fast" && (fastMin < 0 || s.events < fastMin) {
			fastMin = s.events
		}
	}
	return ended, fastMin
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
