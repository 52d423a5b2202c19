package api

import (
	"sync"

	"github.com/rekeyd/rekey/store"
)

// Hub fans events out to subscribers without ever blocking the publisher: a
// subscriber whose buffer is full is dropped (its channel closed). The agent
// and apitest.Fake implement Backend.Subscribe with one. The zero value is
// ready to use.
type Hub struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	dropped int
}

type subscriber struct {
	ch     chan store.Event
	closed bool
}

// Subscribe registers a subscriber with room for buffer events (at least 1).
// cancel unregisters it and may be called more than once.
func (h *Hub) Subscribe(buffer int) (<-chan store.Event, func()) {
	buffer = max(buffer, 1)
	s := &subscriber{ch: make(chan store.Event, buffer)}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s.ch, func() { h.remove(s, false) }
}

// Publish hands e to every subscriber that has room and drops the others.
func (h *Hub) Publish(e store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- e:
		default:
			h.dropLocked(s, true)
		}
	}
}

// Dropped is how many subscribers have been dropped for being slow.
func (h *Hub) Dropped() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

// Subscribers is the number of current subscribers.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close ends every subscription (the agent is stopping).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.dropLocked(s, false)
	}
}

func (h *Hub) remove(s *subscriber, slow bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(s, slow)
}

func (h *Hub) dropLocked(s *subscriber, slow bool) {
	delete(h.subs, s)
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	if slow {
		h.dropped++
	}
}
