package store_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// clock is an injected clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond) // every reading is distinct and ordered
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openStore opens a store in a fresh temporary folder and closes it at cleanup.
func openStore(tb testing.TB) (*store.Store, string, *clock) {
	tb.Helper()
	dir := tb.TempDir() + "/state"
	clk := newClock()
	s, err := store.Open(dir, store.Options{Clock: clk})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, dir, clk
}

// fakePEM returns a unique PEM-shaped secret; the store never parses it.
func fakePEM() []byte {
	b := make([]byte, 96)
	rand.Read(b)
	return []byte("-----BEGIN EC PRIVATE KEY-----\n" + base64.StdEncoding.EncodeToString(b) + "\n-----END EC PRIVATE KEY-----\n")
}

var credSeq int

func newCred(name string) store.NewCredential {
	credSeq++
	return store.NewCredential{
		Name: name, ClientID: "BUSINESSAPI.9f3c1b2a-0000-4000-8000-00000000000" + fmt.Sprint(credSeq%10),
		KeyID: fmt.Sprintf("00000000-0000-4000-8000-%012d", credSeq), Scope: "business.api",
		KeyPEM: fakePEM(), Origin: store.OriginManaged,
	}
}

// addTenant creates a tenant with one active credential.
func addTenant(tb testing.TB, s *store.Store, name string) (store.Tenant, store.Credential) {
	tb.Helper()
	t, c, _, err := s.AddCredential(context.Background(), newCred(name), "")
	if err != nil {
		tb.Fatalf("add credential: %v", err)
	}
	return t, c
}

// rotateTo stages and validates a new credential for the tenant.
func stageValidated(tb testing.TB, s *store.Store, tenantID, name string) (store.Rotation, store.Credential) {
	tb.Helper()
	ctx := context.Background()
	r, c, _, err := s.Stage(ctx, tenantID, newCred(name))
	if err != nil {
		tb.Fatalf("stage: %v", err)
	}
	if _, err := s.Validated(ctx, r.ID); err != nil {
		tb.Fatalf("validated: %v", err)
	}
	return r, c
}

// mustHealthy fails the test if Check finds any problem.
func mustHealthy(tb testing.TB, s *store.Store) {
	tb.Helper()
	probs, err := s.Check(context.Background(), 0)
	if err != nil {
		tb.Fatalf("check: %v", err)
	}
	if len(probs) > 0 {
		tb.Fatalf("check found problems: %+v", probs)
	}
}

func states(tb testing.TB, s *store.Store, tenantID string) map[string]store.CredState {
	tb.Helper()
	cs, err := s.Credentials(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]store.CredState{}
	for _, c := range cs {
		if c.TenantID == tenantID {
			m[c.ID] = c.State
		}
	}
	return m
}
