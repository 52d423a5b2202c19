package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
)

// envInt reads a positive count from the environment (make soak scales the
// tests up this way), or returns def.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// short is the default count of a test inside `make test`: n, or nRace
// under the race detector.
func short(n, nRace int) int {
	if raceEnabled {
		return nRace
	}
	return n
}

// TestSoakChangesAndKills pushes payload changes of every kind at a real
// agent process, kills it with SIGKILL at random moments, and after every
// kill checks the store with the agent stopped: no invariant broken, no
// record lost, no import applied twice, one active credential per tenant.
// REKEY_SOAK_CHANGES scales it (make soak); REKEY_SOAK_SEED replays a run.
func TestSoakChangesAndKills(t *testing.T) {
	changes := envInt(t, "REKEY_SOAK_CHANGES", short(60, 30))
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REKEY_SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REKEY_SOAK_SEED=%q: want a whole number", s)
		}
		seed = v
	}
	t.Logf("seed %d (replay with REKEY_SOAK_SEED=%d)", seed, seed)
	r := &soakRun{t: t, l: newLayout(t), lg: newLedger(), unlocks: map[string]int{}, start: time.Now()}
	r.w = newWorld(t, r.l, seed)
	r.c = startChild(t, r.l)
	r.ev = follow(t, r.l.socket)
	nextKill := 3 + r.w.rng.IntN(10)
	for i := range changes {
		r.change()
		if (i+1)%max(changes/10, 1) == 0 {
			r.laps = append(r.laps, time.Since(r.start))
		}
		if i >= nextKill {
			r.killAndCheck()
			nextKill = i + 3 + r.w.rng.IntN(20)
		}
	}
	r.ev.close()
	r.c.stop()
	r.lg.verify(t, r.l.state)
	r.finalChecks()
	r.report()
}

// soakRun is one soak: the MDM side, the agent process and the checker.
type soakRun struct {
	t        *testing.T
	l        layout
	w        *world
	lg       *ledger
	c        *child
	ev       *follower
	kills    int
	acked    int
	peak     int64
	unlocks  map[string]int
	start    time.Time
	laps     []time.Duration // time at every tenth of the changes
	checking time.Duration   // spent in the checker, agent stopped
}

// change pushes one payload change (sometimes after a UI unlock) and waits
// until the agent has recorded its new ImportID, if it has one.
func (r *soakRun) change() {
	if r.w.rng.IntN(8) == 0 {
		r.unlocks[unlock(r.t, r.w, r.l.socket)]++
	}
	if _, id, kind := r.w.step(); id != "" {
		r.ev.waitFor(kind, id)
		r.acked++
	}
}

// killAndCheck kills the agent at a random moment of its work, checks the
// store with the agent stopped, and starts it again.
func (r *soakRun) killAndCheck() {
	r.ev.skip(r.w.rng.IntN(10), time.Duration(r.w.rng.IntN(40))*time.Millisecond)
	if rss, err := r.c.rss(); err == nil {
		r.peak = max(r.peak, rss)
	}
	r.ev.close()
	r.c.kill()
	r.kills++
	began := time.Now()
	r.lg.verify(r.t, r.l.state)
	r.checking += time.Since(began)
	r.w.apple.SetDevices(min(10+r.kills, 40)) // later syncs find more devices
	r.c = startChild(r.t, r.l)
	r.ev = follow(r.t, r.l.socket)
}

// finalChecks run after the last, clean stop.
func (r *soakRun) finalChecks() {
	t := r.t
	noSecrets(t, r.l.log, filepath.Join(r.l.state, "status.plist"))
	if temps, _ := filepath.Glob(filepath.Join(r.l.state, ".status.plist.tmp-*")); len(temps) > 0 {
		t.Errorf("%d temporary status files left in the state folder after %d kills and a clean stop", len(temps), r.kills)
	}
	if r.kills == 0 {
		t.Fatalf("no kill in %d changes; raise REKEY_SOAK_CHANGES", r.w.total())
	}
	if r.lg.appliedCount() == 0 {
		t.Fatalf("no import was applied in %d changes", r.w.total())
	}
}

func (r *soakRun) report() {
	var laps []string
	prev := time.Duration(0)
	for _, l := range r.laps {
		laps = append(laps, (l - prev).Round(100*time.Millisecond).String())
		prev = l
	}
	r.t.Logf("soak: %d changes (%s), %d recorded by the agent before moving on, %d SIGKILLs, %d store checks passed, "+
		"UI unlocks %v, %d imports applied, %d tenants, %d credentials, %d audit events, largest tenant %d devices, peak RSS %.1f MiB, %s "+
		"(%s of it checking; each tenth of the changes: %s)",
		r.w.total(), r.w.summary(), r.acked, r.kills, r.lg.checks, r.unlocks, r.lg.appliedCount(), len(r.lg.tenants), len(r.lg.creds),
		r.lg.events, r.lg.maxDevices, float64(r.peak)/(1<<20), time.Since(r.start).Round(time.Second), r.checking.Round(time.Second), strings.Join(laps, " "))
}

// summary lists the changes pushed by kind.
func (w *world) summary() string {
	var parts []string
	for c, n := range w.pushed {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// unlock plays a UI: it sends a password for a wrong-password entry, the
// right one or, one time in three, another wrong one, and returns how the
// agent answered. Any answer but success or a documented refusal fails.
func unlock(t testing.TB, w *world, socket string) string {
	t.Helper()
	id, ok := w.lockedEntry()
	if !ok {
		return "none-waiting"
	}
	pass := otherPassphrase
	if w.rng.IntN(3) == 0 {
		pass = "still not the passphrase"
	}
	cl := api.NewClient(socket)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := cl.Unlock(ctx, id, api.UnlockRequest{Password: api.Secret(pass)})
	var ae *api.APIError
	switch {
	case err == nil:
		return "unlocked"
	case errors.As(err, &ae) && slices.Contains([]string{"wrong_password", "rate_limited", "conflict"}, ae.Code):
		return ae.Code
	}
	t.Fatalf("unlock %s: %v", id, err)
	return ""
}

// noSecrets fails the test if a file holds a passphrase, key material or
// ciphertext.
func noSecrets(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty: nothing to check", p)
		}
		for _, s := range []string{testPassphrase, otherPassphrase, "PRIVATE KEY", "AGE ENCRYPTED FILE", "age-encryption.org"} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds secret material (%q)", filepath.Base(p), s)
			}
		}
	}
}
