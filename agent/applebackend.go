package agent

import (
	"context"
	"sync"
	"time"

	"github.com/rekeyd/rekey/agent/apple"
)

// Syncer imports a tenant's devices and coverage with a credential.
type Syncer interface {
	Sync(ctx context.Context, t AuthTarget, b *apple.Budget, state apple.SyncState, sink apple.Sink, progress func(apple.Progress)) error
}

// appleBackend checks and syncs against Apple (or any server speaking its
// API), one client per pair of endpoints so that tokens are reused.
type appleBackend struct {
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error // nil: the client's real timer
	mu      sync.Mutex
	clients map[[2]string]*apple.Client
}

var (
	_ Checker = (*appleBackend)(nil)
	_ Syncer  = (*appleBackend)(nil)
)

func newAppleBackend(now func() time.Time, sleep func(context.Context, time.Duration) error) *appleBackend {
	return &appleBackend{now: now, sleep: sleep, clients: make(map[[2]string]*apple.Client)}
}

func (b *appleBackend) client(t AuthTarget) *apple.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := [2]string{t.TokenURL, t.APIBaseURL}
	c := b.clients[k]
	if c == nil {
		c = &apple.Client{TokenURL: t.TokenURL, APIBaseURL: t.APIBaseURL, Now: b.now, Sleep: b.sleep}
		b.clients[k] = c
	}
	return c
}

func credOf(t AuthTarget) apple.Credential {
	return apple.Credential{ClientID: t.ClientID, KeyID: t.KeyID, Scope: t.Scope, Key: t.Key}
}

// Check exchanges the credential for a token and classifies the answer. A
// refusal blamed on the system clock is unreachable, never rejected.
func (b *appleBackend) Check(ctx context.Context, t AuthTarget) CheckResult {
	r := b.client(t).Check(ctx, credOf(t))
	switch r.Outcome {
	case apple.Accepted:
		return CheckResult{Outcome: Accepted, Reason: r.Reason}
	case apple.Rejected:
		return CheckResult{Outcome: Rejected, Reason: r.Reason}
	}
	return CheckResult{Outcome: Unreachable, Reason: r.Reason}
}

// Sync runs the tenant's sync pass from state into sink, paid from budget.
func (b *appleBackend) Sync(ctx context.Context, t AuthTarget, budget *apple.Budget, state apple.SyncState, sink apple.Sink, progress func(apple.Progress)) error {
	return b.client(t).Sync(ctx, credOf(t), budget, state, sink, progress)
}
