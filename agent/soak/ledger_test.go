package soak

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/platform/clock"
	"github.com/rekeyd/rekey/store"
)

// ledger is the independent checker: with the agent stopped it runs `rekey
// doctor`'s store checks (state folder, database, sealing key), then opens
// the same state folder with store.Open, runs store.Check and compares what
// it finds with what it found before. Nothing recorded may ever disappear.
type ledger struct {
	checks     int
	tenants    map[string]bool
	devices    map[string]int // by tenant: never goes down
	coverage   map[string]int
	creds      map[string]bool
	imports    map[string]store.ImportState
	applied    map[string]int // import.state applied events by ImportID
	lastSeq    int64
	events     int
	maxDevices int
}

func newLedger() *ledger {
	return &ledger{tenants: map[string]bool{}, devices: map[string]int{}, coverage: map[string]int{},
		creds: map[string]bool{}, imports: map[string]store.ImportState{}, applied: map[string]int{}}
}

// verify checks the store in dir and fails the test on the first broken rule.
func (lg *ledger) verify(t testing.TB, dir string) {
	t.Helper()
	ctx := context.Background()
	owners := []int{0, os.Geteuid()}
	findings := doctor.StateDir(dir, owners)
	findings = append(findings, doctor.Database(ctx, dir, time.Hour, clock.System{})...)
	findings = append(findings, doctor.SealKey(ctx, dir, owners)...)
	for _, f := range findings {
		if f.Level == doctor.Fail {
			t.Errorf("check %d: doctor: %+v", lg.checks+1, f)
		}
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatalf("check %d: open store: %v", lg.checks+1, err)
	}
	defer st.Close()
	probs, err := st.Check(ctx, time.Hour)
	if err != nil {
		t.Fatalf("check %d: run store check: %v", lg.checks+1, err)
	}
	for _, p := range probs {
		t.Errorf("check %d: invariant broken: %s %s: %s", lg.checks+1, p.Check, p.Subject, p.Message)
	}
	lg.verifyTenants(t, ctx, st)
	lg.verifyCredentials(t, ctx, st)
	lg.verifyImports(t, ctx, st)
	lg.verifyAudit(t, ctx, st)
	if t.Failed() {
		t.FailNow()
	}
	lg.checks++
}

func (lg *ledger) verifyTenants(t testing.TB, ctx context.Context, st *store.Store) {
	t.Helper()
	tenants, err := st.Tenants(ctx)
	if err != nil {
		t.Fatalf("list tenants: %v", err)
	}
	now := map[string]bool{}
	for _, ten := range tenants {
		now[ten.ID] = true
		d, c, err := st.Counts(ctx, ten.ID)
		if err != nil {
			t.Fatalf("count tenant %s: %v", ten.ID, err)
		}
		if d < lg.devices[ten.ID] || c < lg.coverage[ten.ID] {
			t.Errorf("tenant %s lost records: devices %d → %d, coverage %d → %d", ten.ID, lg.devices[ten.ID], d, lg.coverage[ten.ID], c)
		}
		lg.devices[ten.ID], lg.coverage[ten.ID] = d, c
		lg.maxDevices = max(lg.maxDevices, d)
	}
	for id := range lg.tenants {
		if !now[id] {
			t.Errorf("tenant %s disappeared", id)
		}
	}
	lg.tenants = now
}

func (lg *ledger) verifyCredentials(t testing.TB, ctx context.Context, st *store.Store) {
	t.Helper()
	creds, err := st.Credentials(ctx)
	if err != nil {
		t.Fatalf("list credentials: %v", err)
	}
	active := map[string]int{}
	byImport := map[string]store.Credential{}
	now := map[string]bool{}
	for _, c := range creds {
		now[c.ID] = true
		if c.State == store.CredActive {
			active[c.TenantID]++
		}
		// A failed attempt leaves a failed credential and the import is
		// retried; every other state means the import took effect.
		if c.ImportID == "" || c.State == store.CredFailed {
			continue
		}
		if other, ok := byImport[c.ImportID]; ok {
			t.Errorf("import %s took effect twice: credential %s (%s) and %s (%s)", c.ImportID, other.ID, other.State, c.ID, c.State)
		}
		byImport[c.ImportID] = c
	}
	for ten := range lg.tenants {
		if active[ten] != 1 {
			t.Errorf("tenant %s has %d active credentials, want exactly 1", ten, active[ten])
		}
	}
	for id := range lg.creds {
		if !now[id] {
			t.Errorf("credential %s disappeared", id)
		}
	}
	lg.creds = now
}

func (lg *ledger) verifyImports(t testing.TB, ctx context.Context, st *store.Store) {
	t.Helper()
	imps, err := st.Imports(ctx)
	if err != nil {
		t.Fatalf("list imports: %v", err)
	}
	now := map[string]store.ImportState{}
	for _, imp := range imps {
		now[imp.ID] = imp.State
		if lg.imports[imp.ID] == store.ImportApplied && imp.State != store.ImportApplied {
			t.Errorf("import %s was applied and is now %s", imp.ID, imp.State)
		}
	}
	for id := range lg.imports {
		if _, ok := now[id]; !ok {
			t.Errorf("import %s disappeared", id)
		}
	}
	lg.imports = now
}

// verifyAudit reads the audit log from where the last check stopped: it is
// append-only, and each ImportID is announced as applied at most once.
func (lg *ledger) verifyAudit(t testing.TB, ctx context.Context, st *store.Store) {
	t.Helper()
	for {
		evs, err := st.Events(ctx, lg.lastSeq, 1000)
		if err != nil {
			t.Fatalf("read audit log: %v", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			lg.events++
			lg.lastSeq = e.Seq
			if e.Kind == store.EvImportState && e.Fields["state"] == string(store.ImportApplied) {
				lg.applied[e.ImportID]++
				if lg.applied[e.ImportID] > 1 {
					t.Errorf("import %s announced as applied %d times", e.ImportID, lg.applied[e.ImportID])
				}
			}
		}
	}
	if n, err := countEvents(ctx, st); err != nil {
		t.Fatalf("count audit log: %v", err)
	} else if n < lg.events {
		t.Errorf("audit log shrank: %d events, %d seen before", n, lg.events)
	}
}

// countEvents counts the whole audit log.
func countEvents(ctx context.Context, st *store.Store) (int, error) {
	n := 0
	var after int64
	for {
		evs, err := st.Events(ctx, after, 1000)
		if err != nil {
			return 0, err
		}
		if len(evs) == 0 {
			return n, nil
		}
		n += len(evs)
		after = evs[len(evs)-1].Seq
	}
}

// appliedCount is the number of imports the audit log shows applied.
func (lg *ledger) appliedCount() int { return len(lg.applied) }
