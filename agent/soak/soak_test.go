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
	start := time.Now()
	l := newLayout(t)
	w := newWorld(t, l, seed)
	lg := newLedger()
	c := startChild(t, l)
	ev := follow(t, l.socket)
	kills, acked := 0, 0
	var peak int64
	nextKill := 3 + w.rng.IntN(10)
	unlocks := map[string]int{}
	for i := range changes {
		if w.rng.IntN(8) == 0 {
			unlocks[unlock(t, w, l.socket)]++
		}
		_, id, kind := w.step()
		if id != "" {
			ev.waitFor(kind, id)
			acked++
		}
		if i < nextKill {
			continue
		}
		ev.skip(w.rng.IntN(10), time.Duration(w.rng.IntN(40))*time.Millisecond)
		if r, err := c.rss(); err == nil {
			peak = max(peak, r)
		}
		ev.close()
		c.kill()
		kills++
		lg.verify(t, l.state)
		w.apple.SetDevices(min(10+2*kills, 80)) // later syncs find more devices
		c = startChild(t, l)
		ev = follow(t, l.socket)
		nextKill = i + 3 + w.rng.IntN(20)
	}
	ev.close()
	c.stop()
	lg.verify(t, l.state)
	noSecrets(t, l.log, filepath.Join(l.state, "status.plist"))
	if temps, _ := filepath.Glob(filepath.Join(l.state, ".status.plist.tmp-*")); len(temps) > 0 {
		t.Errorf("%d temporary status files left in the state folder after %d kills and a clean stop", len(temps), kills)
	}
	if kills == 0 {
		t.Fatalf("no kill in %d changes; raise REKEY_SOAK_CHANGES", changes)
	}
	if lg.appliedCount() == 0 {
		t.Fatalf("no import was applied in %d changes", changes)
	}
	t.Logf("soak: %d changes (%s), %d recorded by the agent before moving on, %d SIGKILLs, %d store checks passed, "+
		"UI unlocks %v, %d imports applied, %d tenants, %d credentials, %d audit events, largest tenant %d devices, peak RSS %.1f MiB, %s",
		w.total(), w.summary(), acked, kills, lg.checks, unlocks, lg.appliedCount(), len(lg.tenants), len(lg.creds), lg.events,
		lg.maxDevices, float64(peak)/(1<<20), time.Since(start).Round(time.Second))
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
