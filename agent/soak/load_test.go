package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
	"howett.net/plist"
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

// Subscribers of the load test besides the fast ones.
const (
	nLagging = 5 // read two events per rotation until the rotations end
	nStalled = 5 // read nothing until a burst of events is over
)

// burstSize is how many broken entries the burst payload holds: each is one
// import.invalid event, more than twice what a stalled subscriber holds
// (its 256-event buffer and a socket's worth of lines: about 425 on Linux).
var burstSize = 1000

// TestLoadClientsAndSubscribers runs rotations while 200 API clients read in
// loops and 50 event subscribers follow: 39 fast ones, the test's own, 5
// lagging behind and 5 stalled until a burst of 1000 events is over. Every
// answer is valid JSON, every rotation completes, stalled and lagging
// subscribers are dropped rather than waited for, and memory stays flat.
// REKEY_LOAD_ROTATIONS and REKEY_LOAD_ITERATIONS scale it (make soak).
func TestLoadClientsAndSubscribers(t *testing.T) {
	const nClients, nSubs = 200, 50
	r := &loadRun{t: t, l: newLayout(t), rotations: envInt(t, "REKEY_LOAD_ROTATIONS", short(30, 12)),
		subs: make([]subscriber, nSubs-1), release: make(chan struct{}), burstRelease: make(chan struct{}), stop: make(chan struct{})}
	r.w = newWorld(t, r.l, 1)
	r.c = startChild(t, r.l)
	r.obs = follow(t, r.l.socket)
	r.k = r.w.key("")
	r.w.entries = []payload.PayloadEntry{{ImportID: "load-add", Intent: payload.IntentAdd, Name: "load", Ciphertext: r.w.seal("load", r.k, testPassphrase)}}
	r.w.write()
	r.obs.waitState("load-add", "applied")
	r.subscribeAll()
	r.lc.run(r.l.socket, nClients, envInt(t, "REKEY_LOAD_ITERATIONS", short(3, 1)), r.stop)

	start := time.Now()
	for i := range r.rotations {
		// Early: a stalled subscriber holds a socket's worth of lines
		// before its writes block and time out (10 s later, it is cut).
		if i == min(r.rotations/3, 5) {
			r.burst()
		}
		r.rotate(i)
	}
	elapsed := time.Since(start)
	close(r.stop)
	r.lc.wg.Wait()
	close(r.release)
	// A lagging subscriber reads two events per rotation. Once more than
	// its buffer plus a socket's worth of lines (well under 2000 events)
	// has gone by, it must have been dropped rather than waited for.
	expectDrop := r.obs.seen-2*r.rotations-burstSize > 2000
	if expectDrop {
		waitGroup(t, &r.lagWG, "lagging subscribers to be dropped")
	}
	r.obs.close()
	r.c.stop()
	waitGroup(t, &r.lagWG, "lagging event streams to end after the agent stopped")
	waitGroup(t, &r.fastWG, "event streams to end after the agent stopped")

	if n := r.lc.bad.Load(); n > 0 {
		t.Errorf("%d of %d answers were not 200 with valid JSON; first: %s", n, n+r.lc.answers.Load(), r.lc.first)
	}
	ended, fastMin := tallyEndings(t, r.subs, expectDrop)
	t.Logf("load: %d rotations in %s (slowest %s) under %d clients (%d answers) and %d subscribers (fast ones saw at least %d events, "+
		"the test's own was dropped %d times); burst of %d events in %s; streams ended: %v",
		r.rotations, elapsed.Round(time.Millisecond), r.slowest.Round(time.Millisecond), nClients, r.lc.answers.Load(), nSubs,
		fastMin, r.obs.drops, burstSize, r.burstTook.Round(time.Millisecond), ended)
	checkFlat(t, r.rss)
}

// loadRun is one load test: the agent, its clients and subscribers.
type loadRun struct {
	t                      *testing.T
	l                      layout
	w                      *world
	c                      *child
	obs                    *follower
	k                      appletest.Key // the tenant's client; every rotation registers a new key
	rotations              int
	subs                   []subscriber // lagging, then stalled, then fast
	ticks                  []chan struct{}
	release, burstRelease  chan struct{}
	stop                   chan struct{}
	lagWG, stallWG, fastWG sync.WaitGroup
	lc                     loadClients
	rss                    []int64
	slowest, burstTook     time.Duration
}

func (r *loadRun) subscribeAll() {
	never := make(chan struct{}) // a stalled subscriber's tick never comes
	for i := range r.subs {
		switch {
		case i < nLagging:
			tick := make(chan struct{}, 1)
			r.ticks = append(r.ticks, tick)
			subscribe(r.t, r.l.socket, tick, r.release, &r.subs[i], &r.lagWG)
		case i < nLagging+nStalled:
			subscribe(r.t, r.l.socket, never, r.burstRelease, &r.subs[i], &r.stallWG)
		default:
			subscribe(r.t, r.l.socket, nil, nil, &r.subs[i], &r.fastWG)
		}
	}
}

// rotate pushes update i and waits until it is applied: a minute at most,
// or the test fails. Lagging subscribers then read two more events.
func (r *loadRun) rotate(i int) {
	began := time.Now()
	id := fmt.Sprintf("load-rot-%04d", i)
	name := fmt.Sprintf("load %d", i)
	r.w.entries = []payload.PayloadEntry{{ImportID: id, Intent: payload.IntentUpdate, Target: r.k.ClientID, Name: name,
		Ciphertext: r.w.seal(name, r.w.key(r.k.ClientID), testPassphrase)}}
	r.w.write()
	r.obs.waitState(id, "applied")
	r.slowest = max(r.slowest, time.Since(began))
	for _, tk := range r.ticks {
		select {
		case tk <- struct{}{}:
		default:
		}
	}
	if rss, err := r.c.rss(); err == nil {
		r.rss = append(r.rss, rss)
	}
}

// burst pushes a payload with burstSize broken entries and, after them, a
// marker entry: the agent publishes one import.invalid event per broken
// entry in one go, then records the marker. Stalled subscribers, which
// read nothing until 600 of those events have gone by, are dropped during
// the burst; released, they read to their events_dropped line.
func (r *loadRun) burst() {
	r.t.Helper()
	marker := payload.PayloadEntry{ImportID: "load-burst", Intent: payload.IntentAdd, Name: "burst marker",
		Ciphertext: r.w.seal("burst marker", r.w.key(""), otherPassphrase)}
	doc := payload.PreferenceSettings(append(slices.Clone(r.w.entries), marker), r.w.settings)
	list := doc[payload.KeyCredentials].([]any)
	junk := make([]any, burstSize)
	for i := range junk {
		junk[i] = fmt.Sprintf("broken entry %d", i)
	}
	doc[payload.KeyCredentials] = append(junk, list...)
	b, err := plist.Marshal(doc, plist.XMLFormat)
	if err != nil {
		r.t.Fatal(err)
	}
	began := time.Now()
	if err := platform.WriteFileAtomic(platform.PrefsFile(r.l.prefs, platform.Domain), b, 0o644); err != nil {
		r.t.Fatal(err)
	}
	invalid, done := 0, false
	markerDone := func(e store.Event) bool {
		done = done || e.Kind == store.EvImportRecorded && e.ImportID == marker.ImportID
		return done
	}
	markerSeen := func(cl *api.Client) bool { // after a drop of the test's own stream
		_, err := cl.Import(context.Background(), marker.ImportID)
		done = err == nil
		return done
	}
	// Release the stalled subscribers once they have surely been dropped
	// (past 425 events), not at the end of the burst: from the moment its
	// socket filled, a stalled subscriber's write times out in 10 s.
	r.obs.waitUntil("600 events of the burst", func(e store.Event) bool {
		if e.Kind == store.EvImportInvalid {
			invalid++
		}
		return markerDone(e) || invalid >= 600
	}, markerSeen)
	close(r.burstRelease)
	if !done {
		r.obs.waitUntil("the burst's marker import", markerDone, markerSeen)
	}
	r.burstTook = time.Since(began)
	waitGroup(r.t, &r.stallWG, "stalled subscribers to read to their end")
}

// tallyEndings counts how the event streams ended and fails on an ending
// that is not one of: the events_dropped line, the shutting_down line, or a
// stream cut because a write to a subscriber that had stopped reading timed
// out (then nothing, not even the events_dropped line, can reach it).
// Stalled subscribers must have been dropped with the events_dropped line;
// lagging ones, when drops were expected, before the agent stopped.
func tallyEndings(t *testing.T, subs []subscriber, expectDrop bool) (ended map[string]int, fastMin int) {
	t.Helper()
	ended, fastMin = map[string]int{}, -1
	for i, s := range subs {
		group := "fast"
		switch {
		case i < nLagging:
			group = "lagging"
		case i < nLagging+nStalled:
			group = "stalled"
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
			t.Errorf("%s subscriber %d: stream ended by %v", group, i, s.ending)
			how = "other"
		}
		ended[group+": "+how]++
		switch {
		case group == "stalled" && how != "events_dropped line":
			t.Errorf("stalled subscriber %d ended by %q after %d events, want the events_dropped line", i, how, s.events)
		case group == "stalled":
			t.Logf("stalled subscriber %d read %d events before its events_dropped line", i, s.events)
		case group == "lagging" && expectDrop && how == "shutting_down line":
			t.Errorf("lagging subscriber %d was kept until the agent stopped (%d events read)", i, s.events)
		case group == "fast" && (fastMin < 0 || s.events < fastMin):
			fastMin = s.events
		}
	}
	return ended, fastMin
}

// checkFlat reports the child's RSS at the start, middle and end of the
// rotations and fails on unbounded growth: the end may not exceed twice the
// start plus 64 MiB, a generous bound that only a leak crosses. Under the
// race detector it only reports.
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
	if raceEnabled {
		return // the race detector's shadow memory, not the agent's, dominates
	}
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
