package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

// The benchmarks in this file measure the agent as it runs on an endpoint:
// `rekey run` in a process of its own, with its default settings (debounce,
// settle, the adaptive request budget for Apple, info logging to a file),
// and its clients in other processes. The clients and the fake of Apple
// run in the benchmark's process: they no longer share the agent's Go
// scheduler and garbage collector, and the kernel divides the two cores
// between the processes. agent-cores is the agent process's CPU time over
// the measure's wall time; cores is the benchmark process's.

// BenchmarkStatusAgentProcess is BenchmarkStatusDuringRotations against
// `rekey run`: GET /v1/status from 1, 50 and 200 clients, closed loop and
// paced at 20,000 requests a second, while a tenant of 10,000 devices is
// rotated in a loop (each rotation followed by its sync at the pace the
// budget for Apple allows). Before the rotations the same clients, closed
// loop and paced, run against a bare net/http server in a process of its
// own that answers the agent's status bytes (floor/...: the machine's
// floor for this measure; its agent-cores are that process's) and against
// the agent with nothing to do (idle/...). Last, paced again, while the
// tenant is rotated with payloads sealed at the work factor `rekey seal`
// writes by default (work-factor=18).
func BenchmarkStatusAgentProcess(b *testing.B) {
	// The first sync of the 10,000 devices runs at the highest fixed
	// budget a payload can set; the rotations' payloads set none, so
	// their syncs keep the adaptive default, as an endpoint's do.
	p := newAgentProcess(b, benchDevices, map[string]string{payload.KeyRequestsPerMinute: strconv.Itoa(payload.MaxRequestsPerMinute)})
	a := p.benchAgent()
	first := p.addTenant(true)
	delete(p.settings, payload.KeyRequestsPerMinute)
	if ts, err := waitAPI(b, a.socket).Tenants(context.Background()); err != nil || len(ts) != 1 || ts[0].Counts.Devices != benchDevices {
		b.Fatalf("tenants after the first sync: %+v, %v", ts, err)
	}

	floor := floorProcess(b, a.socket, p.dir)
	for _, t := range []struct {
		name string
		a    benchAgent
	}{{"floor", floor}, {"idle", a}} {
		b.Run(t.name+"/clients=200", func(b *testing.B) {
			measureRotating(b, t.a, nil, func(b *testing.B) time.Duration { return statusLoad(b, t.a.socket, 200) })
		})
		b.Run(t.name+"/paced/clients=200/rate=20000", func(b *testing.B) {
			measureRotating(b, t.a, nil, func(b *testing.B) time.Duration { return statusPaced(b, t.a.socket, 200, 20000) })
		})
	}
	done := statusUnderRotations(b, a, first.ClientID, "", 0, []int{1, 50, 200})

	// Rotations whose payloads are sealed at the work factor `rekey seal`
	// writes by default: each key derivation is about a second of CPU and
	// 256 MiB (the benchmark seals REKEY_ROTATIONS_WF18, default 12, before
	// it starts, about a second each).
	loop := rotationLoop(b, a, first.ClientID, done, payload.DefaultWorkFactor, envInt(b, "REKEY_ROTATIONS_WF18", 12))
	b.Run("paced/clients=200/rate=20000/work-factor=18", func(b *testing.B) {
		measureRotating(b, a, loop, func(b *testing.B) time.Duration { return statusPaced(b, a.socket, 200, 20000) })
	})
	if err := loop.stop(); err != nil {
		b.Fatalf("rotation loop: %v", err)
	}
	b.Logf("work factor 18: %d rotations (%d sealed during the measure)", loop.done.Load(), loop.inline.Load())
}

// floorProcess starts the floor of the status measures in a process of
// its own: a bare net/http server answering every request with the
// agent's status of now, read once from agentSock, on a socket in dir.
// Its agent-cores are that process's.
func floorProcess(b *testing.B, agentSock, dir string) benchAgent {
	b.Helper()
	bodyFile, sock := filepath.Join(dir, "floor.json"), filepath.Join(dir, "floor.sock")
	if err := os.WriteFile(bodyFile, statusBytes(b, agentSock), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFloorSocket+"="+sock, envFloorBody+"="+bodyFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := dialRaw(sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("floor server on %s: %v", sock, err)
		}
		time.Sleep(5 * time.Millisecond) // the OS starting a process is what we wait for
	}
	pid := cmd.Process.Pid
	return benchAgent{socket: sock, cpu: func(b *testing.B) time.Duration { return procCPU(b, pid) }}
}

// BenchmarkMillionDevicesAgentProcess is BenchmarkMillionDevices against
// `rekey run`: the agent adds the tenant and stops, the benchmark stores
// REKEY_BENCH_DEVICES devices (default 1,000,000) in its database, and the
// agent starts again on it; then device pages and status under rotations
// (no syncs) as in BenchmarkMillionDevices.
func BenchmarkMillionDevicesAgentProcess(b *testing.B) {
	n := envInt(b, "REKEY_BENCH_DEVICES", 1_000_000)
	p := newAgentProcess(b, 0, map[string]string{payload.KeySyncInterval: "0"})
	first := p.addTenant(false)
	ts, err := waitAPI(b, p.socket).Tenants(context.Background())
	if err != nil || len(ts) != 1 {
		b.Fatalf("tenants after the add: %+v, %v", ts, err)
	}
	p.stop()
	st, err := store.Open(p.state, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillDevices(b, st, ts[0].ID, n)
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d devices stored in %v", n, time.Since(start).Round(time.Millisecond))
	p.start()
	millionDevices(b, p.benchAgent(), ts[0].ID, first.ClientID, n, false)
}

// agentProcess is `rekey run` on the temporary folders of dir, talking to
// a fake of Apple in this process.
type agentProcess struct {
	b                    *testing.B
	dir, bin             string
	prefs, state, socket string
	apple                *appletest.Server
	settings             map[string]string
	cmd                  *exec.Cmd
}

// newAgentProcess starts `rekey run` (REKEY_BIN, or a build of ./cmd/rekey)
// with a fake of Apple holding devices devices; settings are added to the
// payloads' (the fake's addresses). It is stopped when the benchmark ends.
func newAgentProcess(b *testing.B, devices int, settings map[string]string) *agentProcess {
	dir, err := os.MkdirTemp("", "rk") // short: a socket path must fit in 104 bytes
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	p := &agentProcess{b: b, dir: dir, prefs: filepath.Join(dir, "managed"), state: filepath.Join(dir, "state"),
		socket: filepath.Join(dir, "s.sock")}
	if err := os.MkdirAll(p.prefs, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passphrase"), []byte(testPassphrase+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	p.apple = appletest.New()
	b.Cleanup(p.apple.Close)
	p.apple.SetDevices(devices)
	p.settings = map[string]string{payload.KeyTokenURL: p.apple.TokenURL(), payload.KeyAPIBaseURL: p.apple.APIBaseURL()}
	for k, v := range settings {
		p.settings[k] = v
	}
	p.bin = rekeyBinary(b, dir)
	p.start()
	b.Cleanup(p.stop)
	return p
}

// rekeyBinary returns REKEY_BIN, or builds ./cmd/rekey into dir.
func rekeyBinary(b *testing.B, dir string) string {
	if bin := os.Getenv("REKEY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "rekey")
	build := exec.Command("go", "build", "-o", bin, "github.com/rekeyd/rekey/cmd/rekey")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build rekey (or set REKEY_BIN): %v\n%s", err, out)
	}
	return bin
}

// start runs the agent and waits until its socket answers.
func (p *agentProcess) start() {
	p.b.Helper()
	p.cmd = exec.Command(p.bin, "run", "--prefs-dir", p.prefs, "--state-dir", p.state, "--socket", p.socket,
		"--passphrase-file", filepath.Join(p.dir, "passphrase"), "--log-file", filepath.Join(p.dir, "rekey.log"))
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		p.b.Fatal(err)
	}
	waitAPI(p.b, p.socket)
}

// stop ends the agent as a service manager does (SIGTERM) and waits for
// it; it may be called more than once.
func (p *agentProcess) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		p.b.Errorf("rekey run after SIGTERM: %v", err)
	}
	p.cmd = nil
}

// benchAgent is the agent for the status measures: events come from GET
// /v1/events over its socket.
func (p *agentProcess) benchAgent() benchAgent {
	pid := p.cmd.Process.Pid
	return benchAgent{socket: p.socket, apple: p.apple, payload: platform.PrefsFile(p.prefs, platform.Domain),
		settings: p.settings, subscribe: p.subscribe, cpu: func(b *testing.B) time.Duration { return procCPU(b, pid) }}
}

// subscribe opens the agent's event stream and hands its events over a
// channel until the func it returns is called.
func (p *agentProcess) subscribe() (<-chan store.Event, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := waitAPI(p.b, p.socket).Events(ctx)
	if err != nil {
		p.b.Fatal(err)
	}
	out := make(chan store.Event, 4096)
	go func() {
		defer close(out)
		for {
			e, err := stream.Next()
			if err != nil {
				return
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, func() {
		cancel()
		stream.Close()
	}
}

// addTenant registers a new P-256 credential with the fake of Apple, pushes
// it as an add named "Acme r0" (sealed at a low work factor, written as an
// MDM agent writes a payload) and waits until the import is applied and,
// with firstSync, until the sync that follows has finished. It returns the
// credential.
func (p *agentProcess) addTenant(firstSync bool) appletest.Key {
	p.b.Helper()
	k, err := appletest.GenerateKey("")
	if err != nil {
		p.b.Fatal(err)
	}
	p.apple.RegisterCredential(k.ClientID, k.KeyID, &k.Private.PublicKey)
	ct, err := payload.Seal(payload.SealInput{Name: "Acme r0", ClientID: k.ClientID, KeyID: k.KeyID, KeyPEM: k.PEM}, testPassphrase, 10)
	if err != nil {
		p.b.Fatal(err)
	}
	doc, err := payload.MarshalPayload([]payload.PayloadEntry{{ImportID: "bench-add", Intent: payload.IntentAdd,
		Name: "Acme r0", Ciphertext: ct}}, p.settings)
	if err != nil {
		p.b.Fatal(err)
	}
	events, unsubscribe := p.subscribe()
	defer unsubscribe()
	if err := platform.WriteFileAtomic(platform.PrefsFile(p.prefs, platform.Domain), doc, 0o644); err != nil {
		p.b.Fatal(err)
	}
	applied := false
	deadline := time.After(2 * time.Minute) // the first sync of 10,000 devices takes a while
	for !applied || firstSync {
		select {
		case e, ok := <-events:
			if !ok {
				p.b.Fatal("the agent's event stream ended while it added the tenant")
			}
			switch {
			case e.Kind == store.EvImportState && e.ImportID == "bench-add":
				switch store.ImportState(e.Fields["state"]) {
				case store.ImportApplied:
					applied = true
				case store.ImportFailed, store.ImportNeedsTarget, store.ImportPendingUnlock:
					p.b.Fatalf("the add is %s: %s", e.Fields["state"], e.Message)
				}
			case e.Kind == store.EvSyncFinished && applied:
				firstSync = false
			}
		case <-deadline:
			p.b.Fatalf("the add not applied (%v) or its sync not finished within two minutes", applied)
		}
	}
	return k
}
