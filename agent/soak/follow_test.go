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
	socket string
	cl     *api.Client
	stream *api.EventStream
	ch     chan store.Event
	end    chan error // why the stream ended
	seen   int        // events read from the channel
	drops  int        // times the agent dropped it for being slow
}

// follow subscribes to the agent's events on socket.
func follow(t testing.TB, socket string) *follower {
	t.Helper()
	f := &follower{t: t, socket: socket, cl: api.NewClient(socket)}
	f.subscribe()
	return f
}

func (f *follower) subscribe() {
	f.t.Helper()
	s, err := f.cl.Events(context.Background())
	if err != nil {
		f.t.Fatalf("subscribe to events: %v", err)
	}
	f.stream, f.ch, f.end = s, make(chan store.Event, 1<<16), make(chan error, 1)
	ch, end := f.ch, f.end
	go func() {
		defer close(ch)
		for {
			e, err := s.Next()
			if err != nil {
				end <- err
				return
			}
			ch <- e
		}
	}()
}

// waitUntil reads events until one matches. If the agent drops the stream
// (events_dropped), it subscribes again and asks recheck whether what it
// waits for happened meanwhile; without recheck a drop fails the test.
func (f *follower) waitUntil(what string, match func(store.Event) bool, recheck func(*api.Client) bool) {
	f.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case e, ok := <-f.ch:
			if ok {
				f.seen++
				if match(e) {
					return
				}
				continue
			}
			err := <-f.end
			if !endedBy(err, "events_dropped") || recheck == nil {
				f.t.Fatalf("event stream ended while waiting for %s: %v", what, err)
			}
			f.drops++
			f.stream.Close()
			f.subscribe()
			if recheck(f.cl) {
				return
			}
		case <-deadline.C:
			f.t.Fatalf("no %s within a minute", what)
		}
	}
}

// waitFor waits for an event of kind about importID.
func (f *follower) waitFor(kind store.EventKind, importID string) {
	f.t.Helper()
	f.waitUntil(string(kind)+" of import "+importID, func(e store.Event) bool { return e.Kind == kind && e.ImportID == importID }, nil)
}

// waitState waits until importID reaches state.
func (f *follower) waitState(importID, state string) {
	f.t.Helper()
	f.waitUntil("import "+importID+" "+state, func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.ImportID == importID && e.Fields["state"] == state
	}, func(cl *api.Client) bool {
		imp, err := cl.Import(context.Background(), importID)
		return err == nil && string(imp.State) == state
	})
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
