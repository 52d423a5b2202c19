package agent

import (
	"testing"

	"github.com/rekeyd/rekey/store"
)

func TestBusDropsSlowSubscriberAndFeedsFastOne(t *testing.T) {
	b := newBus()
	slow, _ := b.subscribe(2)
	fast, cancel := b.subscribe(100)
	defer cancel()
	for i := range 10 {
		b.publish(store.Event{Seq: int64(i)})
	}
	n := 0
	for range slow {
		n++
	}
	if n != 2 {
		t.Fatalf("slow subscriber got %d events before being dropped, want its buffer of 2", n)
	}
	for i := range 10 {
		if ev := <-fast; ev.Seq != int64(i) {
			t.Fatalf("fast subscriber event %d has seq %d", i, ev.Seq)
		}
	}
}

func TestBusCancelClosesChannelOnce(t *testing.T) {
	b := newBus()
	ch, cancel := b.subscribe(1)
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel should be closed after cancel")
	}
	b.publish(store.Event{}) // must not panic on a closed subscriber
}
