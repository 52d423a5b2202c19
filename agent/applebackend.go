package agent

import (
	"context"
	"sync"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
)

// appleBackend checks and syncs against Apple (or any server speaking its
// API), one client per pair of endpoints so that tokens are reused.
type appleBackend struct {
	clock   apple.Clock
	sleep   func(ctx context.Context, d time.Duration) error // nil: the client's real timer
	mu      sync.Mutex
	clients map[[2]string]*apple.Client
}

var _ Checker = (*appleBackend)(nil)

func newAppleBackend(clock apple.Clock, sleep func(context.Context, time.Duration) error) *appleBackend {
	return &appleBackend{clock: clock, sleep: sleep, clients: make(map[[2]string]*apple.Client)}
}

func (b *appleBackend) client(t AuthTarget) *apple.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := [2]string{t.TokenURL, t.APIBaseURL}
	c := b.clients[k]
	if c == nil {
		c = &apple.Client{TokenURL: t.TokenURL, APIBaseURL: t.APIBaseURL, Clock: b.clock, Sleep: b.sleep}
		b.clients[k] = c
	}
	return c
}

// Check exchanges the credential for a token and classifies the answer. A
// refusal blamed on the system clock is unreachable, never rejected.
func (b *appleBackend) Check(ctx context.Context, t AuthTarget) apple.CheckResult {
	return b.client(t).Check(ctx, t.Credential)
}

// Sync runs the tenant's sync pass from state into sink, paid from budget.
func (b *appleBackend) Sync(ctx context.Context, t AuthTarget, budget *apple.Budget, state apple.SyncState, sink apple.Sink, progress func(apple.Progress)) error {
	return b.client(t).Sync(ctx, t.Credential, budget, state, sink, progress)
}
