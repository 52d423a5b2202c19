package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

func TestParallelWrongPasswordsAreCountedBeforeDecryptionAndSurviveARestart(t *testing.T) {
	clk := &jumpClock{}
	h := newHarness(t, withClock(clk)).noSync()
	k := h.key("")
	h.push(withID("locked", h.entry("Locked", payload.IntentAdd, "", k, wrongPassphrase)))
	h.untilImport("locked", store.ImportPendingUnlock)
	client := waitAPI(t, h.socket)

	const guesses = 40
	var wrong, limited, other int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range guesses {
		wg.Go(func() {
			<-start
			_, err := client.Unlock(context.Background(), "locked", api.UnlockRequest{Password: api.Secret("a guess")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, api.ErrWrongPassword):
				wrong++
			case errors.Is(err, api.ErrRateLimited):
				limited++
			default:
				other++
				t.Errorf("guess: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	free := api.NewLimiter().Free
	if wrong < 1 || wrong > free || wrong+limited != guesses {
		t.Fatalf("%d parallel guesses: %d decrypted (422), %d refused (429), %d other; want at most %d decrypted and the rest refused",
			guesses, wrong, limited, other, free)
	}
	// Go on guessing one at a time until the lock-out: never more than Free
	// guesses are decrypted in all.
	for wrong < free+1 {
		_, err := client.Unlock(context.Background(), "locked", api.UnlockRequest{Password: api.Secret("a guess")})
		if errors.Is(err, api.ErrRateLimited) {
			break
		}
		if !errors.Is(err, api.ErrWrongPassword) {
			t.Fatalf("guess: %v", err)
		}
		wrong++
	}
	if wrong != free {
		t.Fatalf("%d guesses decrypted before the lock-out, want %d", wrong, free)
	}

	h.stop()
	h.start(withClock(clk))
	h.waitFor("payload read again", func(e store.Event) bool { return e.Kind == store.EvSourceRead })
	client = waitAPI(t, h.socket)
	_, err := client.Unlock(context.Background(), "locked", api.UnlockRequest{Password: api.Secret(wrongPassphrase)})
	if !errors.Is(err, api.ErrRateLimited) {
		t.Fatalf("the right password right after a restart: %v; want the lock-out kept (429)", err)
	}
	clk.jump(api.NewLimiter().Base + time.Second)
	imp, err := client.Unlock(context.Background(), "locked", api.UnlockRequest{Password: api.Secret(wrongPassphrase)})
	if err != nil || imp.State != store.ImportApplied {
		t.Fatalf("the right password after the lock-out: %+v, %v", imp, err)
	}
}
