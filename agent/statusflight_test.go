package agent

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
)

// gatedBuilds numbers each build in its Version and holds it until released.
type gatedBuilds struct {
	n       atomic.Int64
	entered chan int64
	release chan struct{}
}

func newGatedBuilds() *gatedBuilds {
	return &gatedBuilds{entered: make(chan int64, 100), release: make(chan struct{})}
}

func (g *gatedBuilds) build(context.Context) (api.Status, error) {
	n := g.n.Add(1)
	g.entered <- n
	<-g.release
	return api.Status{Agent: api.AgentInfo{Version: strconv.FormatInt(n, 10)}}, nil
}

func TestStatusCallersNeverGetABuildStartedBeforeTheyAsked(t *testing.T) {
	var f statusFlight[api.Status]
	g := newGatedBuilds()
	first := make(chan api.Status, 1)
	go func() { st, _ := f.do(context.Background(), g.build); first <- st }()
	if n := <-g.entered; n != 1 {
		t.Fatalf("first build is number %d", n)
	}
	// Build 1 is running: everyone asking now must wait for a later one.
	const late = 20
	results := make(chan api.Status, late)
	for range late {
		go func() { st, _ := f.do(context.Background(), g.build); results <- st }()
	}
	close(g.release) // let every build through
	if st := <-first; st.Agent.Version != "1" {
		t.Fatalf("first caller got build %s", st.Agent.Version)
	}
	for range late {
		if st := <-results; st.Agent.Version == "1" {
			t.Fatal("a caller that asked while build 1 ran got build 1: it may miss a change it had seen")
		}
	}
	if n := g.n.Load(); n > late+1 {
		t.Fatalf("%d builds for %d callers", n, late+1)
	}
}

func TestStatusCallerThatGivesUpDoesNotCancelOthers(t *testing.T) {
	var f statusFlight[api.Status]
	g := newGatedBuilds()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { _, err := f.do(ctx, g.build); gaveUp <- err }()
	<-g.entered
	other := make(chan api.Status, 1)
	go func() { st, _ := f.do(context.Background(), g.build); other <- st }()
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	close(g.release)
	if st := <-other; st.Agent.Version == "" {
		t.Fatal("the other caller got no status")
	}
}
