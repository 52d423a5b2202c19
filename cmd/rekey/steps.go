package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// stepWait bounds how long a command waits, after the agent answered, for
// the event of the last step to arrive on the stream; the answer itself is
// already final.
const stepWait = 5 * time.Second

// stepFollower prints, on stderr, the events of one operation as the agent
// publishes them: each rotation step as it happens.
type stepFollower struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   []store.Event
	change chan struct{}
}

// followSteps subscribes to the agent's events before the operation starts
// and prints those match selects. When show is false, or the stream cannot
// be opened, it prints nothing: the operation's answer still says how it ended.
func followSteps(ctx context.Context, env *Env, c *api.Client, show bool, match func(store.Event) bool) *stepFollower {
	f := &stepFollower{done: make(chan struct{}), change: make(chan struct{}, 1)}
	if !show {
		close(f.done)
		return f
	}
	ctx, f.cancel = context.WithCancel(ctx)
	stream, err := c.Events(ctx)
	if err != nil {
		f.cancel()
		close(f.done)
		return f
	}
	go func() {
		defer close(f.done)
		defer stream.Close()
		for {
			e, err := stream.Next()
			if err != nil {
				return
			}
			if !match(e) {
				continue
			}
			fmt.Fprintf(env.Stderr, "  %-20s %s\n", stepName(e), e.Message)
			f.mu.Lock()
			f.seen = append(f.seen, e)
			f.mu.Unlock()
			select {
			case f.change <- struct{}{}:
			default:
			}
		}
	}()
	return f
}

// stepName is the short name of a step: "staged" for rotation.staged.
func stepName(e store.Event) string {
	if _, after, ok := strings.Cut(string(e.Kind), "."); ok && strings.HasPrefix(string(e.Kind), "rotation.") {
		return after
	}
	return string(e.Kind)
}

// wait returns once an event matching last has been printed, or after stepWait.
func (f *stepFollower) wait(last func(store.Event) bool) {
	if f.cancel == nil {
		return
	}
	timeout := time.NewTimer(stepWait)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		for _, e := range f.seen {
			if last(e) {
				f.mu.Unlock()
				return
			}
		}
		f.mu.Unlock()
		select {
		case <-f.change:
		case <-f.done:
			return
		case <-timeout.C:
			return
		}
	}
}

// stop ends the subscription.
func (f *stepFollower) stop() {
	if f.cancel != nil {
		f.cancel()
	}
	<-f.done
}
