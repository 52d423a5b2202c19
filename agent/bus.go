package agent

import (
	"sync"

	"github.com/rekeyd/rekey/store"
)

// bus fans events out to subscribers. A subscriber whose buffer is full is
// dropped (its channel closed) so that a slow UI never stalls the agent.
type bus struct {
	mu   sync.Mutex
	subs map[chan store.Event]struct{}
}

func newBus() *bus { return &bus{subs: make(map[chan store.Event]struct{})} }

// subscribe returns a channel of events and a function that ends the
// subscription. The channel is closed when the subscriber is dropped or
// cancelled.
func (b *bus) subscribe(buffer int) (<-chan store.Event, func()) {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan store.Event, buffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() { b.drop(ch) }
}

func (b *bus) drop(ch chan store.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

// publish delivers ev to every subscriber without blocking.
func (b *bus) publish(ev store.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			delete(b.subs, ch)
			close(ch)
		}
	}
}

// closeAll ends every subscription; used at shutdown.
func (b *bus) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}
