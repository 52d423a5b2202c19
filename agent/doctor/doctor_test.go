package doctor_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

const secretPass = "correct horse battery staple for doctor"

// endpoint is a set of rekey paths in a temporary folder.
type endpoint struct {
	dir, state, prefs, pass, socket string
}

func newEndpoint(t *testing.T) endpoint {
	t.Helper()
	dir, err := os.MkdirTemp("", "rkd") // short: socket paths are limited to 104 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := endpoint{dir: dir, state: filepath.Join(dir, "state"), prefs: filepath.Join(dir, "managed"),
		pass: filepath.Join(dir, "passphrase"), socket: filepath.Join(dir, "s.sock")}
	if err := os.MkdirAll(e.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.pass, []byte(secretPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e endpoint) config() doctor.Config {
	return doctor.Config{StateDir: e.state, PrefsDir: e.prefs, PassphraseFile: e.pass, Socket: e.socket,
		Owners: []int{os.Geteuid()}}
}

// runAgent runs a real agent on e until the test ends.
func (e endpoint) runAgent(t *testing.T) {
	t.Helper()
	a, err := agent.New(agent.Config{AppleRequestsPerMinute: 1e9, PrefsDir: e.prefs, StateDir: e.state, Socket: e.socket, PassphraseFile: e.pass,
		Trust: platform.TrustRule{Owners: []int{os.Geteuid()}}, Version: "doctor-test"})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := a.Subscribe(16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		a.Close()
	})
	// The socket answers once the API listens; wait on the health check itself.
	deadline := time.Now().Add(10 * time.Second)
	for doctor.Socket(context.Background(), e.socket, time.Second, doctor.ServiceUnknown).Level != doctor.OK {
		if time.Now().After(deadline) {
			t.Fatal("agent never answered on its socket")
		}
		select {
		case <-ev:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// find returns the findings of check at level.
func find(r doctor.Report, check string, level doctor.Level) []doctor.Finding {
	var out []doctor.Finding
	for _, f := range r.Findings {
		if f.Check == check && f.Level == level {
			out = append(out, f)
		}
	}
	return out
}

// mustFind fails unless a finding of check at level mentions every word.
func mustFind(t *testing.T, r doctor.Report, check string, level doctor.Level, words ...string) doctor.Finding {
	t.Helper()
	for _, f := range find(r, check, level) {
		text := f.Message + " " + f.Fix
		all := true
		for _, w := range words {
			all = all && strings.Contains(text, w)
		}
		if all && (level == doctor.OK || f.Fix != "") {
			return f
		}
	}
	t.Fatalf("no %s finding for %s with %q (and a fix); report:\n%s", level, check, words, text(r))
	return doctor.Finding{}
}

func text(r doctor.Report) string {
	var b bytes.Buffer
	r.WriteText(&b)
	return b.String()
}

func TestHealthyRunningEndpointHasNoFailure(t *testing.T) {
	e := newEndpoint(t)
	e.runAgent(t)
	r := doctor.Run(context.Background(), e.config())
	if r.Failed {
		t.Fatalf("healthy endpoint failed:\n%s", text(r))
	}
	for _, c := range []string{"state-folder", "database", "seal-key", "passphrase-file", "managed-prefs", "socket"} {
		mustFind(t, r, c, doctor.OK)
	}
	mustFind(t, r, "service", doctor.Warn, "unknown")
	mustFind(t, r, "agent-lock", doctor.OK, fmt.Sprintf("(pid %d) holds", os.Getpid()))
	noSecrets(t, r, e)
	t.Logf("report:\n%s", text(r))
}

func TestFreshStoppedEndpointOnlyWarns(t *testing.T) {
	e := newEndpoint(t)
	os.RemoveAll(e.prefs)
	os.Remove(e.pass)
	r := doctor.Run(context.Background(), e.config())
	if r.Failed {
		t.Fatalf("a fresh endpoint failed:\n%s", text(r))
	}
	mustFind(t, r, "database", doctor.Warn, "does not exist yet", "start the agent")
	mustFind(t, r, "passphrase-file", doctor.Warn, "pending-unlock")
	mustFind(t, r, "managed-prefs", doctor.OK, "no payload delivered")
	mustFind(t, r, "socket", doctor.Warn, "not running", "rekey start")
	if _, err := os.Stat(e.state); err == nil {
		t.Error("doctor created the state folder")
	}
}

func TestEachBreakageIsAFailureWithItsFix(t *testing.T) {
	cases := map[string]struct {
		breakIt func(t *testing.T, e endpoint)
		check   string
		words   []string
	}{
		"passphrase file group-readable": {func(t *testing.T, e endpoint) { os.Chmod(e.pass, 0o640) },
			"passphrase-file", []string{"group or others", "chmod 600"}},
		"sealing key world-readable": {func(t *testing.T, e endpoint) { os.Chmod(filepath.Join(e.state, store.SealKeyFile), 0o644) },
			"seal-key", []string{"group or others", "chmod 600"}},
		"database deleted": {func(t *testing.T, e endpoint) { os.Remove(filepath.Join(e.state, store.DBFile)) },
			"database", []string{"seal.key is there but rekey.db is missing", "restore"}},
		"database emptied": {func(t *testing.T, e endpoint) {
			for _, n := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
				os.Remove(filepath.Join(e.state, n))
			}
			if err := os.WriteFile(filepath.Join(e.state, store.DBFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "database", []string{"rekey.db is empty (0 bytes)", "restore"}},
		"sealing key missing": {func(t *testing.T, e endpoint) { os.Remove(filepath.Join(e.state, store.SealKeyFile)) },
			"seal-key", []string{"the database holds 1 credentials", "restore"}},
		"database replaced by junk": {func(t *testing.T, e endpoint) {
			os.WriteFile(filepath.Join(e.state, store.DBFile), bytes.Repeat([]byte("junk "), 100), 0o600)
		}, "database", []string{"no SQLite header", "restore"}},
		"payload not a plist": {func(t *testing.T, e endpoint) {
			os.WriteFile(platform.PrefsFile(e.prefs, platform.Domain), []byte("{not a plist"), 0o644)
		}, "managed-prefs", []string{"does not parse", "rekey seal"}},
		"prefs folder a link to a user-writable folder": {func(t *testing.T, e endpoint) {
			user := filepath.Join(e.dir, "user")
			os.Mkdir(user, 0o777)
			os.Chmod(user, 0o777)
			os.WriteFile(platform.PrefsFile(user, platform.Domain), []byte("x"), 0o644)
			os.RemoveAll(e.prefs)
			if err := os.Symlink(user, e.prefs); err != nil {
				t.Fatal(err)
			}
		}, "managed-prefs", []string{"leads to", "writable by group or others", "refused"}},
		"socket path squatted by a file": {func(t *testing.T, e endpoint) { os.WriteFile(e.socket, []byte("mine"), 0o644) },
			"socket", []string{"regular file", "refuses to start", "remove it"}},
		"socket of another program": {func(t *testing.T, e endpoint) {
			l, err := net.Listen("unix", e.socket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("SSH-2.0-not-rekey\r\n"))
					c.Close()
				}
			}()
		}, "socket", []string{"does not answer like a rekey agent", "stop it or choose another --socket"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			s, err := store.Open(e.state, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			addCredential(t, s)
			s.Close()
			c.breakIt(t, e)
			r := doctor.Run(context.Background(), e.config())
			if !r.Failed {
				t.Fatalf("report not failed:\n%s", text(r))
			}
			f := mustFind(t, r, c.check, doctor.Fail, c.words...)
			noSecrets(t, r, e)
			t.Logf("%s: %s (fix: %s)", name, f.Message, f.Fix)
		})
	}
}

func TestStaleRotationFails(t *testing.T) {
	e := newEndpoint(t)
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	s, err := store.Open(e.state, store.Options{Clock: fixedClock(now)})
	if err != nil {
		t.Fatal(err)
	}
	ten := addCredential(t, s)
	nc := newCred("rotated")
	if _, _, _, err := s.Stage(context.Background(), ten.ID, nc); err != nil {
		t.Fatal(err)
	}
	s.Close()
	cfg := e.config()
	cfg.Clock = fixedClock(now.Add(30 * time.Minute))
	if r := doctor.Run(context.Background(), cfg); r.Failed {
		t.Fatalf("a rotation in its retry window failed:\n%s", text(r))
	}
	cfg.Clock = fixedClock(now.Add(2 * time.Hour))
	r := doctor.Run(context.Background(), cfg)
	mustFind(t, r, "database", doctor.Fail, "stale-rotation", "restart the agent")
}

func TestServiceRunningButSocketDeadFails(t *testing.T) {
	e := newEndpoint(t)
	cfg := e.config()
	cfg.Service = func() (doctor.ServiceState, error) { return doctor.ServiceRunning, nil }
	r := doctor.Run(context.Background(), cfg)
	mustFind(t, r, "socket", doctor.Fail, "service is running but nothing answers")
	mustFind(t, r, "service", doctor.OK, "running")
	cfg.Service = func() (doctor.ServiceState, error) { return doctor.ServiceNotInstalled, nil }
	r = doctor.Run(context.Background(), cfg)
	mustFind(t, r, "socket", doctor.Warn, "not running")
	mustFind(t, r, "service", doctor.Warn, "not installed", "rekey install")
}

func TestDoctorNeverWritesTheStore(t *testing.T) {
	e := newEndpoint(t)
	s, err := store.Open(e.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addCredential(t, s)
	s.Close()
	before := snapshot(t, e.state)
	doctor.Run(context.Background(), e.config())
	if after := snapshot(t, e.state); after != before {
		t.Fatalf("state folder changed:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot is every file of dir with its mode and content hash.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ent := range ents {
		fi, _ := ent.Info()
		data, _ := os.ReadFile(filepath.Join(dir, ent.Name()))
		b.WriteString(ent.Name() + " " + fi.Mode().String() + " " + hex.EncodeToString(data) + "\n")
	}
	return b.String()
}

// noSecrets fails if the passphrase or the sealing key shows in the report.
func noSecrets(t *testing.T, r doctor.Report, e endpoint) {
	t.Helper()
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back doctor.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Findings) != len(r.Findings) {
		t.Fatalf("JSON does not round-trip: %v", err)
	}
	out := text(r) + js.String()
	secrets := []string{secretPass}
	if key, err := os.ReadFile(filepath.Join(e.state, store.SealKeyFile)); err == nil && len(key) > 0 {
		secrets = append(secrets, string(key), hex.EncodeToString(key))
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatal("the report shows a secret")
		}
	}
}

// fixedClock always says the same time.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }
