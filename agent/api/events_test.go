package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

func TestSlowSubscriberIsDroppedWhileFastOneGetsEverything(t *testing.T) {
	f := sampleFake()
	sock, _ := apitest.Serve(t, api.Config{Backend: f, EventBuffer: 4})
	c := api.NewClient(sock)
	defer c.Close()
	ctx := context.Background()

	fast, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	// The slow client opens the stream by hand and reads nothing until the end.
	slow, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /v1/events HTTP/1.1\r\nHost: rekey\r\n\r\n")
	f.WaitSubscribers(t, 2)

	pad := strings.Repeat("x", 4096)
	var sent int64
	for f.Dropped() == 0 {
		if sent > 100000 {
			t.Fatal("slow subscriber never dropped")
		}
		sent++
		f.Publish(store.Event{Seq: sent, Kind: "test", Message: pad})
		e, err := fast.Next()
		if err != nil || e.Seq != sent {
			t.Fatalf("fast subscriber: event %d, err %v; want seq %d", e.Seq, err, sent)
		}
	}
	// The publisher went on without waiting; the fast subscriber still follows.
	f.Publish(store.Event{Seq: sent + 1, Kind: "after-drop"})
	if e, err := fast.Next(); err != nil || e.Kind != "after-drop" {
		t.Fatalf("fast subscriber after the drop: %+v, %v", e, err)
	}
	// The slow stream ends with the error line.
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"events_dropped"`) {
		t.Fatalf("slow stream ends with %q, want an events_dropped error line", last)
	}
}

func TestEventsStreamEndsWithAClearErrorWhenTheServerStops(t *testing.T) {
	f := sampleFake()
	sock, srv := apitest.Serve(t, api.Config{Backend: f})
	c := api.NewClient(sock)
	defer c.Close()
	s, err := c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.WaitSubscribers(t, 1)
	f.Publish(store.Event{Seq: 1, Kind: store.EvImportRecorded, Message: "hello"})
	if e, err := s.Next(); err != nil || e.Kind != store.EvImportRecorded || string(s.Line()) == "" {
		t.Fatalf("event %+v, %v", e, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v", err)
	}
	var ae *api.APIError
	if _, err := s.Next(); !errors.As(err, &ae) || ae.Code != "shutting_down" {
		t.Fatalf("after shutdown: %v, want a shutting_down error", err)
	}
}

func TestSlowSubscriberErrorIsErrDropped(t *testing.T) {
	var h api.Hub
	ch, cancel := h.Subscribe(1)
	defer cancel()
	h.Publish(store.Event{Seq: 1})
	h.Publish(store.Event{Seq: 2}) // no room: dropped
	if e := <-ch; e.Seq != 1 {
		t.Fatalf("first event %d", e.Seq)
	}
	if _, ok := <-ch; ok || h.Dropped() != 1 || h.Subscribers() != 0 {
		t.Fatalf("channel open %v, dropped %d, subscribers %d", ok, h.Dropped(), h.Subscribers())
	}
	cancel() // cancelling after a drop is harmless
	if err := (&api.APIError{Code: "events_dropped"}); !errors.Is(err, api.ErrDropped) {
		t.Fatal("events_dropped does not unwrap to ErrDropped")
	}
}

// TestEventStreamOutlivesTheReadTimeout guards against the server's
// ReadTimeout cancelling a stream that has been open longer than it: the
// deadline is the OS's, so this test waits for real time to pass.
func TestEventStreamOutlivesTheReadTimeout(t *testing.T) {
	f := sampleFake()
	path := filepath.Join(apitest.ShortTempDir(t), "rekey.sock")
	l, err := api.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{Backend: f})
	api.SetReadTimeout(srv, 50*time.Millisecond)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	c := api.NewClient(path)
	defer c.Close()
	s, err := c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.WaitSubscribers(t, 1)
	<-time.After(300 * time.Millisecond) // well past the read timeout
	f.Publish(store.Event{Seq: 7, Kind: "late"})
	if e, err := s.Next(); err != nil || e.Seq != 7 {
		t.Fatalf("stream after the read timeout: %+v, %v", e, err)
	}
}
