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
	// Success forgets the failures: two more failures (below Free) lock
	// nothing, where the six counted before would have.
	for i := range 2 {
		r, wait, err := lim.Reserve(context.Background(), "i1")
		if r == nil || err != nil {
			t.Fatalf("attempt %d after a success: wait %v, %v; want the failures forgotten", i+1, wait, err)
		}
		r.Failed()
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
	if r, wait, err := lim.Reserve(context.Background(), "x"); r != nil || err != nil || wait != 5*time.Minute {
		t.Fatalf("reserve %v wait %v err %v, want locked for the 5m ceiling", r != nil, wait, err)
	}
}

// blockingLimitStore is a LimitStore whose writes for one import wait until
// released; other imports' reads and writes go through at once.
type blockingLimitStore struct {
	slowID  string
	entered chan struct{} // a write for slowID has started
	release chan struct{} // lets that write finish
}

func (s *blockingLimitStore) UnlockLimit(context.Context, string) (int, time.Time, error) {
	return 0, time.Time{}, nil
}

func (s *blockingLimitStore) SetUnlockLimit(_ context.Context, id string, _ int, _ time.Time) error {
	if id == s.slowID {
		s.entered <- struct{}{}
		<-s.release
	}
	return nil
}

// TestSlowStoreWriteDoesNotStallOtherImports: while one import's attempt is
// being recorded (a long write or a wipe's checkpoint), an unlock of another
// import reserves and ends its attempt, and the slow import itself refuses a
// second attempt instead of waiting.
func TestSlowStoreWriteDoesNotStallOtherImports(t *testing.T) {
	st := &blockingLimitStore{slowID: "slow", entered: make(chan struct{}), release: make(chan struct{})}
	lim := api.NewLimiter()
	lim.Store = st
	slow := make(chan error, 1)
	go func() {
		r, _, err := lim.Reserve(context.Background(), "slow")
		if err == nil {
			r.Cancel()
		}
		slow <- err
	}()
	<-st.entered // the slow import's write is in progress

	other := make(chan error, 1)
	go func() {
		r, wait, err := lim.Reserve(context.Background(), "fast")
		if err == nil && r == nil {
			err = errors.New("refused, wait " + wait.String())
		}
		if r != nil {
			r.Failed()
		}
		r2, wait, err2 := lim.Reserve(context.Background(), "slow")
		if r2 != nil || wait <= 0 || err2 != nil {
			err = errors.Join(err, errors.New("a second attempt on the busy import was not refused"))
		}
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("an unlock of another import waited for the slow import's store write")
	}
	close(st.release)
	<-st.entered // Cancel's write
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}
