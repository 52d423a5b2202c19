package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

func TestRollbackByNameAndJSON(t *testing.T) {
	f := fakeAgent()
	var rolled []string
	f.RollbackFunc = func(_ context.Context, id string) error {
		rolled = append(rolled, id)
		return nil
	}
	sock := startAgent(t, f)
	code, out, errOut := runAt(t, sock, "", "rollback", "acme")
	if code != exitOK || !strings.Contains(out, "Rolled back Acme (t1).") || !strings.Contains(out, "active     Acme 2026") {
		t.Fatalf("code %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAt(t, sock, "", "rollback", "t1", "--json")
	var ts api.TenantStatus
	if code != exitOK || json.Unmarshal([]byte(out), &ts) != nil || ts.ID != "t1" {
		t.Fatalf("--json: code %d, out %q", code, out)
	}
	if strings.Join(rolled, ",") != "t1,t1" {
		t.Fatalf("rolled back %v", rolled)
	}
}

func TestRollbackWithoutPreviousExplains(t *testing.T) {
	f := fakeAgent()
	f.RollbackFunc = func(_ context.Context, id string) error {
		return fmt.Errorf("rollback tenant %s: %w", id, store.ErrState)
	}
	sock := startAgent(t, f)
	code, _, errOut := runAt(t, sock, "", "rollback", "t1")
	if code != exitFailure || !strings.Contains(errOut, "only while it keeps a previous credential") {
		t.Fatalf("code %d, err %q", code, errOut)
	}
}
