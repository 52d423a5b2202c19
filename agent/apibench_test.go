package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// benchDevices is the size of the benchmark tenant.
const benchDevices = 10_000

// BenchmarkStatusDuringRotations measures GET /v1/status over the real socket
// of the real agent, with 1, 50 and 200 clients each on its own connection,
// while a tenant of 10,000 devices is rotated in a loop in the background
// (each rotation: a new payload, decrypt, auth check, cutover, confirmation,
// and the sync that follows). rotations/s is how many rotations completed
// during the measurement: status polling must not starve them.
//
// Two kinds of load: closed loop (clients=N: each client sends its next
// request as soon as the last is answered, so the rate is whatever the
// machine gives) and open loop (paced/...: 200 clients sending 20,000
// requests a second in all on a timer, latency counted from when each
// request was due). The floor/... runs point the same clients at a bare
// net/http server answering the same bytes, idle/... at the agent before
// the rotations start, and the last paced run slows the rotations to ten
// a second. The rotations' syncs run first with no request budget for
// Apple (flat out against the in-process fake), then, after a restart of
// the agent, with its default adaptive budget (apple-budget/...), the pace
// an endpoint's syncs keep.
func BenchmarkStatusDuringRotations(b *testing.B) {
	h := newHarness(b)
	h.apple.SetDevices(benchDevices)
	first := h.key("")
	add := h.entry("Acme r0", payload.IntentAdd, "", first, testPassphrase)
	add.ImportID = "bench-add"
	h.push(add)
	h.waitImport(add.ImportID, store.ImportApplied)
	waitLong(b, h, store.EvSyncFinished) // 10,000 devices take longer than waitFor's deadline
	if n, _, err := h.agent.Store().Counts(context.Background(), h.active("").TenantID); err != nil || n != benchDevices {
		b.Fatalf("tenant holds %d devices, %v", n, err)
	}

	floor := floorServer(b, h.socket)
	for _, clients := range []int{1, 50, 200} {
		b.Run(fmt.Sprintf("floor/clients=%d", clients), func(b *testing.B) { statusLoad(b, floor, clients) })
	}
	b.Run("floor/paced/clients=200/rate=20000", func(b *testing.B) { statusPaced(b, floor, 200, 20000) })
	b.Run("idle/paced/clients=200/rate=20000", func(b *testing.B) { statusPaced(b, h.socket, 200, 20000) })

	done := statusUnderRotations(b, h.benchAgent(), first.ClientID, "", 0, []int{1, 50, 200})

	// The same with the agent's own request budget for Apple (adaptive,
	// from 20 requests a minute) instead of none: the syncs after the
	// rotations run at the pace Apple allows, as on an endpoint.
	h.stop()
	h.start(func(cfg *agent.Config) { cfg.AppleRequestsPerMinute = 0 })
	waitAPI(b, h.socket)
	statusUnderRotations(b, h.benchAgent(), first.ClientID, "apple-budget/", done, []int{1, 200})
}

// benchAgent is the agent a status benchmark measures: a harness's, in this
// process, or `rekey run` in its own (BenchmarkStatusAgentProcess).
type benchAgent struct {
	socket   string
	apple    *appletest.Server // learns each rotation's new key
	payload  string            // the payload file the rotations write
	settings map[string]string // the payload's settings
	// subscribe opens the agent's event stream; the func it returns closes it.
	subscribe func() (<-chan store.Event, func())
	// cpu is the CPU time of the agent's process so far, read for the
	// (sub-)benchmark b; nil when that process is this one (the cores
	// metric counts it already).
	cpu func(b *testing.B) time.Duration
}

func (h *harness) benchAgent() benchAgent {
	return benchAgent{socket: h.socket, apple: h.apple, payload: h.payloadPath(), settings: h.settings,
		subscribe: func() (<-chan store.Event, func()) { return h.agent.Subscribe(4096) }}
}

// statusUnderRotations starts the rotation loop on a, whose tenant is named
// "Acme r<from>", and measures status under it: closed loop at each count
// of clients and paced at 20,000 requests a second, with the rotations flat
// out, then slowed to ten a second. The sub-benchmarks' names begin with
// prefix. It returns the number the tenant's name has after the loop.
func statusUnderRotations(b *testing.B, a benchAgent, clientID, prefix string, from int, clients []int) int {
	loop := startRotations(b, a, clientID, from)
	run := func(name string, load func(b *testing.B) time.Duration) {
		b.Run(prefix+name, func(b *testing.B) { measureRotating(b, a, loop, load) })
	}
	for _, n := range clients {
		run(fmt.Sprintf("clients=%d", n), func(b *testing.B) time.Duration { return statusLoad(b, a.socket, n) })
	}
	paced := func(b *testing.B) time.Duration { return statusPaced(b, a.socket, 200, 20000) }
	run("paced/clients=200/rate=20000", paced)
	loop.period.Store(int64(100 * time.Millisecond))
	run("paced/clients=200/rate=20000/rotations=10per-s", paced)
	if err := loop.stop(); err != nil {
		b.Fatalf("rotation loop: %v", err)
	}
	b.Logf("%s: %d rotations completed in the background (%d sealed during the measure)", prefix, loop.done.Load(), loop.inline.Load())
	return from + int(loop.done.Load())
}

// measureRotating runs load (which returns the time it took) while loop
// rotates a's tenant (nil: nothing does), and reports the rotations
// completed a second and, when a runs in a process of its own, the cores
// that process used (agent-cores: its CPU time over the load's wall time).
func measureRotating(b *testing.B, a benchAgent, loop *rotations, load func(b *testing.B) time.Duration) {
	var before int64
	if loop != nil {
		before = loop.done.Load()
	}
	var cpu time.Duration
	if a.cpu != nil {
		cpu = a.cpu(b)
	}
	elapsed := load(b)
	if loop != nil {
		b.ReportMetric(float64(loop.done.Load()-before)/elapsed.Seconds(), "rotations/s")
	}
	if a.cpu != nil {
		b.ReportMetric((a.cpu(b)-cpu).Seconds()/elapsed.Seconds(), "agent-cores")
	}
}

// statusPaced sends b.N GET /v1/status from clients goroutines at rate
// requests per second in all (open loop: each client on its own schedule,
// one request every clients/rate seconds, the clients spread over that
// period) and reports p50, p99 and the rate reached. A request's latency
// runs from the time it was due, not from when it was sent: an answer late
// enough to delay the next request counts against that one too, as a
// client polling on a timer would see it.
func statusPaced(b *testing.B, sock string, clients, rate int) time.Duration {
	period := time.Duration(float64(time.Second) * float64(clients) / float64(rate))
	each := (b.N + clients - 1) / clients
	lat := make([]time.Duration, clients*each)
	start := time.Now().Add(10 * time.Millisecond)
	return clientLoad(b, sock, clients, lat, func(c *rawClient, i int) error {
		for k := range each {
			due := start.Add(period*time.Duration(k) + period*time.Duration(i)/time.Duration(clients))
			time.Sleep(time.Until(due))
			if err := getStatus(c); err != nil {
				return err
			}
			lat[i*each+k] = time.Since(due)
		}
		return nil
	})
}

// statusLoad sends b.N GET /v1/status from clients goroutines, each
// sending its next request as soon as the last is answered (closed loop),
// and reports p50, p99 and requests per second. The clients read each
// answer whole and check its status line, but do not decode it: they share
// the agent's CPU, and the measure is the agent's cost.
func statusLoad(b *testing.B, sock string, clients int) time.Duration {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	return clientLoad(b, sock, clients, lat, func(c *rawClient, _ int) error {
		for {
			i := next.Add(1) - 1
			if i >= int64(b.N) {
				return nil
			}
			t := time.Now()
			if err := getStatus(c); err != nil {
				return err
			}
			lat[i] = time.Since(t)
		}
	})
}

// clientLoad runs work(c, i) for clients i = 0, 1, ... at once, each on its
// own connection c to sock, fails b on the first error, and reports the
// p50, p99 and rate of the latencies the clients wrote into lat, and the
// cores the process used meanwhile (clients, agent and everything else in
// it: user and system time over wall time; the machine has two).
func clientLoad(b *testing.B, sock string, clients int, lat []time.Duration, work func(c *rawClient, i int) error) time.Duration {
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu := cpuTime(b)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialRaw(sock)
			if err == nil {
				err = work(c, i)
				c.Close()
			}
			if err != nil {
				failed.Store(err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu = cpuTime(b) - cpu
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	return elapsed
}

// floorServer starts a bare net/http server on a socket of its own that
// answers every request with the agent's status of now, read once from
// agentSock, and returns its socket. statusLoad against it is the floor of
// the status measure on this machine: the same clients and bytes over the
// same kind of socket, with no agent behind them and nothing else running.
func floorServer(b *testing.B, agentSock string) string {
	b.Helper()
	body := statusBytes(b, agentSock)
	dir, err := os.MkdirTemp("", "rf") // short: a socket path must fit in 104 bytes
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "floor.sock"))
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: floorHandler(body)}
	go srv.Serve(l)
	b.Cleanup(func() {
		srv.Close()
		os.RemoveAll(dir)
	})
	return l.Addr().String()
}

// statusBytes reads the agent's GET /v1/status answer of now, for a floor.
func statusBytes(b *testing.B, agentSock string) []byte {
	b.Helper()
	c, err := dialRaw(agentSock)
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	resp, err := c.get("/v1/status", &body)
	c.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET /v1/status for the floor: %v, %v", resp, err)
	}
	return body.Bytes()
}

// floorHandler answers every request with body, as the agent answers
// GET /v1/status.
func floorHandler(body []byte) http.Handler {
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{length}
		w.Write(body)
	})
}

// The floor server as a process of its own (BenchmarkStatusAgentProcess):
// the test binary run with envFloorSocket serves the file named by
// envFloorBody there until it is killed.
const (
	envFloorSocket = "REKEY_TEST_FLOOR_SOCKET"
	envFloorBody   = "REKEY_TEST_FLOOR_BODY"
)

func floorServerChild(sock string) int {
	body, err := os.ReadFile(os.Getenv(envFloorBody))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, (&http.Server{Handler: floorHandler(body)}).Serve(l))
	return 1
}

// rawClient is one kept-alive HTTP/1.1 connection to the agent's socket,
// with no transport goroutines: a request is written and its answer read
// on the caller's goroutine, so the clients take as little as they can of
// the CPU they share with the agent.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	body bytes.Buffer // getStatus's
}

func dialRaw(sock string) (*rawClient, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (c *rawClient) Close() error { return c.conn.Close() }

// get sends GET path and appends the answer's body to body.
func (c *rawClient) get(path string, body *bytes.Buffer) (*http.Response, error) {
	c.req = append(append(append(c.req[:0], "GET "...), path...), " HTTP/1.1\r\nHost: rekey\r\n\r\n"...)
	if _, err := c.conn.Write(c.req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if body == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		_, err = body.ReadFrom(resp.Body)
	}
	return resp, err
}

// getStatus reads one GET /v1/status answer whole, into the client's own
// buffer: the clients share the agent's process, and garbage of theirs
// would be collected on the agent's time.
func getStatus(c *rawClient) error {
	c.body.Reset()
	resp, err := c.get("/v1/status", &c.body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || c.body.Len() == 0 {
		return fmt.Errorf("GET /v1/status: %s, %d bytes", resp.Status, c.body.Len())
	}
	return nil
}

// rotations pushes update payloads one after another until stopped.
type rotations struct {
	cancel func()
	result chan error
	done   atomic.Int64  // rotations applied
	inline atomic.Int64  // rotations whose payload was sealed during the measure
	first  chan struct{} // closed when the first rotation was applied
	// period, when set (nanoseconds), is the least time from the start of
	// one rotation to the start of the next; 0: one after the other.
	period atomic.Int64
}

// startRotations rotates the credential of clientID, named "Acme r<from>",
// again and again: each round registers a new key with the fake Apple,
// pushes an update naming the last credential and waits for the import to
// be applied. The payloads of the first REKEY_ROTATIONS rounds (default
// 3,000) are sealed before the loop starts: an MDM's payloads are
// sealed on the administrator's machine, and the scrypt of sealing would
// otherwise be the benchmark's own load on the cores it measures. Rounds
// past those seal their own (counted in inline). The payloads are sealed
// at work factor 10 (a few milliseconds of scrypt).
func startRotations(b *testing.B, a benchAgent, clientID string, from int) *rotations {
	return rotationLoop(b, a, clientID, from, 10, envInt(b, "REKEY_ROTATIONS", 3000))
}

// rotationLoop is startRotations with payloads sealed at workFactor, the
// first sealed of them before the loop starts.
func rotationLoop(b *testing.B, a benchAgent, clientID string, from, workFactor, sealed int) *rotations {
	b.Helper()
	pool := make([]sealedRotation, sealed)
	for k := range pool {
		e, err := sealRotation(clientID, from+1+k, workFactor)
		if err != nil {
			b.Fatal(err)
		}
		pool[k] = e
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rotations{cancel: cancel, result: make(chan error, 1), first: make(chan struct{})}
	events, unsubscribe := a.subscribe()
	go func() {
		defer unsubscribe()
		last := time.Now()
		for k := 0; ; k++ {
			if p := time.Duration(r.period.Load()); p > 0 {
				select {
				case <-time.After(time.Until(last.Add(p))):
				case <-ctx.Done():
					r.result <- nil
					return
				}
			}
			last = time.Now()
			var e sealedRotation
			var err error
			if k < len(pool) {
				e = pool[k]
			} else {
				r.inline.Add(1)
				e, err = sealRotation(clientID, from+1+k, workFactor)
			}
			if err == nil {
				// Not ctx: a rotation under way when the loop is stopped
				// finishes first, so that done is the tenant's number.
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				err = rotateOnce(rctx, a, events, e)
				cancel()
			}
			if err != nil {
				r.result <- err
				return
			}
			if r.done.Add(1) == 1 {
				close(r.first)
			}
			if ctx.Err() != nil {
				r.result <- nil
				return
			}
		}
	}()
	return r
}

func (r *rotations) stop() error {
	r.cancel()
	return <-r.result
}

// sealedRotation is the payload entry of one update and its new key.
type sealedRotation struct {
	entry    payload.PayloadEntry
	clientID string
	keyID    string
	pub      *ecdsa.PublicKey
}

// sealRotation seals the update from "Acme r<i-1>" to "Acme r<i>" with a
// new key, at workFactor.
func sealRotation(clientID string, i, workFactor int) (sealedRotation, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return sealedRotation{}, err
	}
	der, _ := x509.MarshalECPrivateKey(priv)
	keyID := uuid.NewString()
	ct, err := payload.Seal(payload.SealInput{Name: fmt.Sprintf("Acme r%d", i), ClientID: clientID, KeyID: keyID,
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})}, testPassphrase, workFactor)
	return sealedRotation{entry: payload.PayloadEntry{ImportID: fmt.Sprintf("bench-rotation-%d", i), Intent: payload.IntentUpdate,
		Target: fmt.Sprintf("Acme r%d", i-1), Name: fmt.Sprintf("Acme r%d", i), Ciphertext: ct},
		clientID: clientID, keyID: keyID, pub: &priv.PublicKey}, err
}

// rotateOnce registers r's key with the fake Apple (which holds one key per
// Client ID), pushes the payload holding r's entry and waits for its import
// to be applied. It reports errors instead of failing the test: it runs
// outside the test goroutine.
func rotateOnce(ctx context.Context, a benchAgent, events <-chan store.Event, r sealedRotation) error {
	a.apple.RegisterCredential(r.clientID, r.keyID, r.pub)
	e := r.entry
	doc, err := payload.MarshalPayload([]payload.PayloadEntry{e}, a.settings)
	if err != nil {
		return err
	}
	if err := platform.WriteFileAtomic(a.payload, doc, 0o644); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("event stream closed while waiting for %s", e.ImportID)
			}
			if ev.Kind != store.EvImportState || ev.ImportID != e.ImportID {
				continue
			}
			switch store.ImportState(ev.Fields["state"]) {
			case store.ImportApplied:
				return nil
			case store.ImportFailed, store.ImportNeedsTarget:
				return fmt.Errorf("%s: %s", e.ImportID, ev.Message)
			}
		}
	}
}

// waitLong waits up to two minutes for an event of kind.
func waitLong(b *testing.B, h *harness, kind store.EventKind) {
	b.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case e := <-h.events:
			if e.Kind == kind {
				return
			}
		case <-deadline:
			b.Fatalf("no %s event within two minutes", kind)
		}
	}
}
