package soak

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

// follower reads an agent's event stream into a channel.
type follower struct {
	t      testing.TB
	cl     *api.Client
	stream *api.EventStream
	ch     chan store.Event
	end    chan error // why the stream ended
	seen   int        // events read from the channel
}

// follow subscribes to the agent's events on socket.
func follow(t testing.TB, socket string) *follower {
	t.Helper()
	cl := api.NewClient(socket)
	s, err := cl.Events(context.Background())
	if err != nil {
		t.Fatalf("subscribe to events: %v", err)
	}
	f := &follower{t: t, cl: cl, stream: s, ch: make(chan store.Event, 1<<16), end: make(chan error, 1)}
	go func() {
		defer close(f.ch)
		for {
			e, err := s.Next()
			if err != nil {
				f.end <- err
				return
			}
			f.ch <- e
		}
	}()
	return f
}

// waitFor reads events until one of kind for importID arrives.
func (f *follower) waitFor(kind, importID string) store.Event {
	f.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-f.ch:
			if !ok {
				f.t.Fatalf("event stream ended while waiting for %s of %s: %v", kind, importID, <-f.end)
			}
			if e.Kind == kind && e.ImportID == importID {
				return e
			}
		case <-deadline.C:
			f.t.Fatalf("no %s event for import %s within a minute", kind, importID)
		}
	}
}

// skip lets up to n further events pass, or d, whichever comes first: a
// random moment to kill the agent at.
func (f *follower) skip(n int, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for range n {
		select {
		case _, ok := <-f.ch:
			if !ok {
				return
			}
		case <-timer.C:
			return
		}
	}
}

// close ends the subscription.
func (f *follower) close() {
	f.stream.Close()
	for range f.ch {
	}
	f.cl.Close()
}

// endedBy reports whether err is the stream's final error line with code.
func endedBy(err error, code string) bool {
	var ae *api.APIError
	return errors.As(err, &ae) && ae.Code == code
}

// waitState reads events until importID reaches state.
func (f *follower) waitState(importID, state string) {
	f.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-f.ch:
			f.seen++
			if !ok {
				f.t.Fatalf("event stream ended while waiting for import %s to be %s: %v", importID, state, <-f.end)
			}
			if e.Kind == "import.state" && e.ImportID == importID && e.Fields["state"] == state {
				return
			}
		case <-deadline.C:
			f.t.Fatalf("import %s not %s within a minute", importID, state)
		}
	}
}
