package store_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/rekeyd/rekey/store"
)

// modelTenant is what the property test expects of one tenant.
type modelTenant struct {
	id                        string
	active, previous, pending string
	rot                       string // the unfinished rotation, if any
	rotFrom                   string
	rotStep                   store.Step
	coverage                  map[string]int // serial -> number of coverage records
}

// machine drives random operation sequences against a real store and a model.
type machine struct {
	s       *store.Store
	ctx     context.Context
	tenants []*modelTenant
	states  map[string]store.CredState
}

func (m *machine) tenant(t *rapid.T) *modelTenant {
	if len(m.tenants) == 0 {
		t.Skip("no tenant yet")
	}
	return rapid.SampledFrom(m.tenants).Draw(t, "tenant")
}

func expectErr(t *rapid.T, op string, err, want error) {
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", op, err, want)
	}
}

func (m *machine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"add": func(t *rapid.T) {
			if len(m.tenants) >= 3 {
				t.Skip("enough tenants")
			}
			ten, c, _, err := m.s.AddCredential(m.ctx, newCred("t"), "")
			expectErr(t, "add", err, nil)
			m.tenants = append(m.tenants, &modelTenant{id: ten.ID, active: c.ID, coverage: map[string]int{}})
			m.states[c.ID] = store.CredActive
		},
		"stage": func(t *rapid.T) {
			mt := m.tenant(t)
			r, c, _, err := m.s.Stage(m.ctx, mt.id, newCred("n"))
			if mt.rot != "" {
				expectErr(t, "stage", err, store.ErrInvariant)
				return
			}
			expectErr(t, "stage", err, nil)
			mt.rot, mt.rotFrom, mt.rotStep, mt.pending = r.ID, mt.active, store.StepStaged, c.ID
			m.states[c.ID] = store.CredPending
		},
		"validate": func(t *rapid.T) {
			mt := m.tenant(t)
			if mt.rot == "" {
				t.Skip("no rotation")
			}
			expectErr(t, "validate", errOf1(m.s.Validated(m.ctx, mt.rot)), nil)
			mt.rotStep = store.StepValidated
		},
		"fail": func(t *rapid.T) {
			mt := m.tenant(t)
			if mt.rot == "" {
				t.Skip("no rotation")
			}
			expectErr(t, "fail", errOf1(m.s.FailRotation(m.ctx, mt.rot, "test failure")), nil)
			m.states[mt.pending] = store.CredFailed
			mt.rot, mt.pending = "", ""
		},
		"cutover": func(t *rapid.T) {
			mt := m.tenant(t)
			if mt.rot == "" {
				t.Skip("no rotation")
			}
			_, err := m.s.Cutover(m.ctx, mt.rot)
			if mt.rotStep != store.StepValidated || mt.rotFrom != mt.active {
				expectErr(t, "cutover", err, store.ErrState)
				return
			}
			expectErr(t, "cutover", err, nil)
			if mt.previous != "" {
				m.states[mt.previous] = store.CredRetired
			}
			m.states[mt.active], m.states[mt.pending] = store.CredPrevious, store.CredActive
			mt.previous, mt.active, mt.pending, mt.rot = mt.active, mt.pending, "", ""
		},
		"confirm": func(t *rapid.T) {
			mt := m.tenant(t)
			// The token is the active credential's, or the previous one's
			// (a sync that began before the cut-over), which confirms nothing.
			cred := mt.active
			if rapid.Bool().Draw(t, "by the previous credential") {
				cred = mt.previous
			}
			_, err := m.s.Confirm(m.ctx, mt.id, cred)
			if mt.previous == "" || cred != mt.active {
				expectErr(t, "confirm", err, store.ErrState)
				return
			}
			expectErr(t, "confirm", err, nil)
			m.states[mt.previous] = store.CredRetired
			mt.previous = ""
		},
		"rollback": func(t *rapid.T) {
			mt := m.tenant(t)
			_, err := m.s.Rollback(m.ctx, mt.id)
			if mt.previous == "" {
				expectErr(t, "rollback", err, store.ErrState)
				return
			}
			expectErr(t, "rollback", err, nil)
			m.states[mt.previous], m.states[mt.active] = store.CredActive, store.CredPrevious
			mt.previous, mt.active = mt.active, mt.previous
		},
		"devices": func(t *rapid.T) {
			mt := m.tenant(t)
			serials := rapid.SliceOfNDistinct(rapid.IntRange(0, 19), 1, 8, rapid.ID).Draw(t, "serials")
			var devs []store.Device
			for _, n := range serials {
				devs = append(devs, store.Device{Serial: fmt.Sprintf("SN%02d", n)})
			}
			expectErr(t, "devices", m.s.UpsertDevices(m.ctx, mt.id, devs), nil)
			for _, d := range devs {
				if _, ok := mt.coverage[d.Serial]; !ok {
					mt.coverage[d.Serial] = 0
				}
			}
		},
		"coverage": func(t *rapid.T) {
			mt := m.tenant(t)
			serial := fmt.Sprintf("SN%02d", rapid.IntRange(0, 19).Draw(t, "serial"))
			n := rapid.IntRange(0, 2).Draw(t, "records")
			dc := store.DeviceCoverage{Serial: serial}
			for i := range n {
				dc.Records = append(dc.Records, store.Coverage{ID: fmt.Sprintf("cov-%s-%d", serial, i)})
			}
			err := m.s.UpsertCoverage(m.ctx, mt.id, []store.DeviceCoverage{dc})
			if _, ok := mt.coverage[serial]; !ok {
				expectErr(t, "coverage", err, store.ErrInvariant)
				return
			}
			expectErr(t, "coverage", err, nil)
			mt.coverage[serial] = n
		},
		"": m.check,
	}
}

// check compares the store with the model and runs Store.Check.
func (m *machine) check(t *rapid.T) {
	probs, err := m.s.Check(m.ctx, 0)
	if err != nil || len(probs) > 0 {
		t.Fatalf("check: %v %+v", err, probs)
	}
	creds, err := m.s.Credentials(m.ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]store.CredState{}
	for _, c := range creds {
		got[c.ID] = c.State
		wantKey := c.State == store.CredActive || c.State == store.CredPrevious || c.State == store.CredPending
		if c.HasKey != wantKey {
			t.Fatalf("credential %s in state %s: has key %v", c.ID, c.State, c.HasKey)
		}
	}
	if diff := cmp.Diff(m.states, got); diff != "" {
		t.Fatalf("credential states (-model +store):\n%s", diff)
	}
	for _, mt := range m.tenants {
		devs, cov, err := m.s.Counts(m.ctx, mt.id)
		wantCov := 0
		for _, n := range mt.coverage {
			wantCov += n
		}
		if err != nil || devs != len(mt.coverage) || cov != wantCov {
			t.Fatalf("tenant %s counts = %d, %d (%v), want %d, %d", mt.id, devs, cov, err, len(mt.coverage), wantCov)
		}
	}
}

func TestRandomOperationSequencesKeepInvariants(t *testing.T) {
	if raceEnabled && !flagGiven("rapid.checks") {
		flag.Set("rapid.checks", "10") // the race detector slows SQLite about tenfold
	}
	root := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(root, "case")
		if err != nil {
			rt.Fatal(err)
		}
		s, err := store.Open(dir, store.Options{Clock: newClock()})
		if err != nil {
			rt.Fatal(err)
		}
		defer s.Close()
		m := &machine{s: s, ctx: context.Background(), states: map[string]store.CredState{}}
		rt.Repeat(m.actions())
	})
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
