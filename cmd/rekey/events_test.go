package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

// follow runs a long-lived command until it has printed want, then stops it
// the way Ctrl-C does and returns its exit code and output.
func follow(t *testing.T, f *apitest.Fake, sock string, events []store.Event, want string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := newSyncBuffer(), newSyncBuffer()
	env := &Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut, Getenv: socketEnv(sock)}
	done := make(chan int, 1)
	go func() { done <- Run(ctx, env, args) }()
	f.WaitSubscribers(t, 1)
	for _, e := range events {
		f.Publish(e)
	}
	out.waitFor(t, want)
	cancel()
	return <-done, out.String()
}

func sampleEvents() []store.Event {
	return []store.Event{
		{Seq: 1, Time: t0, Kind: store.EvImportRecorded, ImportID: "i9", Message: "new import Acme 2027"},
		{Seq: 2, Time: t0.Add(time.Second), Kind: store.EvRotationCutover, TenantID: "t1", RotationID: "r1", Message: "Acme 2026 is active", Fields: map[string]string{"from": "c1", "to": "c2"}},
	}
}

func TestEventsFollowsInHumanForm(t *testing.T) {
	f := fakeAgent()
	sock := startAgent(t, f)
	code, out := follow(t, f, sock, sampleEvents(), "Acme 2026 is active", "events")
	if code != exitOK {
		t.Fatalf("code %d", code)
	}
	for _, want := range []string{
		"2026-11-26 09:00:00  import.recorded      new import Acme 2027 import=i9",
		"rotation.cutover     Acme 2026 is active tenant=t1 rotation=r1 from=c1 to=c2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

func TestEventsJSONPrintsTheRawLines(t *testing.T) {
	f := fakeAgent()
	sock := startAgent(t, f)
	code, out := follow(t, f, sock, sampleEvents(), `"seq":2`, "events", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 2 {
		t.Fatalf("code %d, lines %q", code, lines)
	}
	for i, l := range lines {
		var e store.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq != int64(i+1) {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
}

func TestEventsEndsWithAnErrorWhenTheAgentStops(t *testing.T) {
	f := fakeAgent()
	sock := startAgent(t, f)
	errOut := newSyncBuffer()
	env := &Env{Stdin: strings.NewReader(""), Stdout: newSyncBuffer(), Stderr: errOut, Getenv: socketEnv(sock)}
	done := make(chan int, 1)
	go func() { done <- Run(context.Background(), env, []string{"events"}) }()
	f.WaitSubscribers(t, 1)
	f.Close() // the agent ends every subscription, as a slow reader would see
	if code := <-done; code != exitFailure || !strings.Contains(errOut.String(), "read too slowly") {
		t.Fatalf("code %d, stderr %q", code, errOut.String())
	}
}
