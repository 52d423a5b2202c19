package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

// syncingAgent publishes a sync's events for tenant t1 when asked; fail makes
// the sync fail after its progress.
func syncingAgent(fail bool) *apitest.Fake {
	f := fakeAgent()
	f.SyncFunc = func(_ context.Context, id string) error {
		if id != "t1" {
			return fmt.Errorf("tenant %s: %w", id, store.ErrNotFound)
		}
		go func() {
			f.Publish(store.Event{Seq: 1, Kind: store.EvSyncStarted, TenantID: "t1", Message: "sync started"})
			f.Publish(store.Event{Seq: 2, Kind: store.EvImportRecorded, TenantID: "t2", Message: "unrelated"})
			f.Publish(store.Event{Seq: 3, Kind: store.EvSyncProgress, TenantID: "t1", Fields: map[string]string{"devices": "1000", "coverage": "400"}})
			if fail {
				f.Publish(store.Event{Seq: 4, Kind: store.EvSyncFailed, TenantID: "t1", Message: "Apple answered 401: invalid_client"})
				return
			}
			f.Publish(store.Event{Seq: 4, Kind: store.EvSyncFinished, TenantID: "t1", Fields: map[string]string{"devices": "1200", "coverage": "950"}})
		}()
		return nil
	}
	return f
}

func TestSyncFollowsToTheEnd(t *testing.T) {
	sock := startAgent(t, syncingAgent(false))
	code, out, errOut := runAt(t, sock, "", "sync", "Acme")
	if code != exitOK || out != "Synced Acme: 1200 devices, 950 coverage records.\n" {
		t.Fatalf("code %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAt(t, sock, "", "sync", "--json", "t1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 {
		t.Fatalf("--json: code %d, lines %q", code, lines)
	}
	var last store.Event
	if json.Unmarshal([]byte(lines[2]), &last) != nil || last.Kind != store.EvSyncFinished {
		t.Fatalf("last line %q", lines[2])
	}
}

func TestSyncFailureAndUnknownTenant(t *testing.T) {
	sock := startAgent(t, syncingAgent(true))
	code, _, errOut := runAt(t, sock, "", "sync", "t1")
	if code != exitFailure || !strings.Contains(errOut, "sync of t1 failed: Apple answered 401: invalid_client") {
		t.Fatalf("code %d, err %q", code, errOut)
	}
	code, _, errOut = runAt(t, sock, "", "sync", "Nowhere")
	if code != exitFailure || !strings.Contains(errOut, `no tenant with id or name "Nowhere"`) {
		t.Fatalf("code %d, err %q", code, errOut)
	}
	if code, _, _ := runAt(t, sock, "", "sync"); code != exitUsage {
		t.Fatalf("sync without tenant: %d", code)
	}
}

func TestSyncBusyIsReported(t *testing.T) {
	f := fakeAgent()
	f.SyncFunc = func(context.Context, string) error { return fmt.Errorf("sync t1: %w", api.ErrBusy) }
	sock := startAgent(t, f)
	code, _, errOut := runAt(t, sock, "", "sync", "t1")
	if code != exitFailure || !strings.Contains(errOut, "busy") {
		t.Fatalf("code %d, err %q", code, errOut)
	}
}
