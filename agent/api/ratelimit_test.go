package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func TestWrongPasswordsLockTheImportOutWithDoublingWaits(t *testing.T) {
	clk := &clock{now: t0}
	lim := &api.Limiter{Free: 3, Base: time.Minute, Max: 10 * time.Minute, Clock: clk}
	calls := 0
	f := sampleFake()
	f.UnlockFunc = func(_ context.Context, id string, req api.UnlockRequest) (store.Import, error) {
		calls++
		if string(req.Password) != "right" {
			return store.Import{}, api.ErrWrongPassword
		}
		return store.Import{ID: id, State: store.ImportApplied}, nil
	}
	sock, _ := apitest.Serve(t, api.Config{Backend: f, Limiter: lim})
	c := api.NewClient(sock)
	defer c.Close()
	try := func(pw string) error {
		_, err := c.Unlock(context.Background(), "i1", api.UnlockRequest{Password: api.Secret(pw)})
		return err
	}
	for i := range 3 {
		if err := try("wrong"); !errors.Is(err, api.ErrWrongPassword) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if err := try("right"); !errors.Is(err, api.ErrRateLimited) {
		t.Fatalf("4th attempt: %v, want rate limited", err)
	}
	if calls != 3 {
		t.Fatalf("backend called %d times, want 3 (locked attempts must not reach it)", calls)
	}
	// Another import is not affected.
	if _, err := c.Unlock(context.Background(), "i2", api.UnlockRequest{Password: api.Secret("right")}); err != nil {
		t.Fatalf("other import: %v", err)
	}
	status, _ := raw(t, sock, "POST", "/v1/imports/i1/unlock", `{"password":"right"}`)
	if status != 429 {
		t.Fatalf("status %d, want 429", status)
	}
	clk.Advance(time.Minute)
	if err := try("wrong"); !errors.Is(err, api.ErrWrongPassword) {
		t.Fatalf("after the first lockout: %v", err)
	}
	clk.Advance(time.Minute + 59*time.Second) // second lockout is 2m
	if err := try("right"); !errors.Is(err, api.ErrRateLimited) {
		t.Fatalf("inside the doubled lockout: %v", err)
	}
	clk.Advance(time.Second)
	if err := try("right"); err != nil {
		t.Fatalf("after the doubled lockout: %v", err)
	}
	// Success forgets the failures.
	if ok, _ := lim.Allow("i1"); !ok {
		t.Fatal("success did not reset the limiter")
	}
}

func TestLimiterCapsTheLockout(t *testing.T) {
	clk := &clock{now: t0}
	lim := &api.Limiter{Free: 1, Base: time.Minute, Max: 5 * time.Minute, Clock: clk}
	for i := range 20 {
		clk.Advance(time.Hour) // past each lockout
		r, wait, err := lim.Reserve(context.Background(), "x")
		if r == nil || err != nil {
			t.Fatalf("reserve %d: %v, wait %v", i, err, wait)
		}
		r.Failed()
	}
	if ok, wait := lim.Allow("x"); ok || wait != 5*time.Minute {
		t.Fatalf("allow %v wait %v, want locked for the 5m ceiling", ok, wait)
	}
}
