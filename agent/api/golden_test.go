package api_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAnswersMatchGolden pins the wire format UIs depend on.
func TestAnswersMatchGolden(t *testing.T) {
	f := sampleFake()
	f.StatusFunc = func(context.Context) (api.Status, error) {
		return api.Status{
			Agent:  api.AgentInfo{Version: "1.2.3", PID: 4242, UID: 0, Started: t0},
			Source: api.SourceInfo{Path: "/Library/Managed Preferences", LastRead: t0.Add(time.Minute), LastError: "other.plist: group-writable; fix with chmod g-w"},
			Tenants: []api.TenantStatus{{
				ID: "t1", Name: "Acme", Scope: "business.api",
				Active:   &api.CredentialSummary{ID: "c2", Name: "Acme 2026", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2026", Since: t0},
				Previous: &api.CredentialSummary{ID: "c1", Name: "Acme 2025", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2025", Since: t0.Add(-time.Hour)},
				Devices:  1200, Coverage: 950, LastSync: t0,
				Counts:    store.TenantCounts{Devices: 1200, Coverage: 950, Released: 3, Active: 700, Expired: 180, None: 300, Unknown: 17},
				Freshness: store.Freshness{OldestCheck: t0.Add(-36 * time.Hour), Never: 17, Stale: 40},
			}},
			PendingImports: []store.Import{{ID: "i9", Hash: "ab12", Source: "/Library/Managed Preferences/com.github.rekeyd.rekey.plist", Name: "Acme 2027", Intent: "auto", State: store.ImportPendingUnlock, CreatedAt: t0, UpdatedAt: t0}},
			LastRotation:   &store.Rotation{ID: "r1", TenantID: "t1", ImportID: "i8", FromCredentialID: "c1", ToCredentialID: "c2", Step: store.StepCutover, StartedAt: t0, UpdatedAt: t0},
		}, nil
	}
	_, sock := serveFake(t, f)
	// A backend that encodes its status beforehand answers the same bytes.
	encSock, _ := apitest.Serve(t, api.Config{Backend: encodingFake{f}, Version: "1.2.3"})
	_, plain := raw(t, sock, "GET", "/v1/status", "")
	if _, pre := raw(t, encSock, "GET", "/v1/status", ""); pre != plain {
		t.Errorf("status encoded beforehand differs from the encoded answer:\n%s\nwant:\n%s", pre, plain)
	}
	for _, tc := range []struct{ name, method, path string }{
		{"status", "GET", "/v1/status"},
		{"health", "GET", "/v1/health"},
		{"devices", "GET", "/v1/tenants/t1/devices?after=A&limit=2"},
		{"not_found", "GET", "/v1/imports/zz"},
	} {
		_, body := raw(t, sock, tc.method, tc.path, "")
		golden := filepath.Join("testdata", tc.name+".json")
		if *update {
			if err := os.WriteFile(golden, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if body != string(want) {
			t.Errorf("%s %s differs from %s (run with -update to accept):\n%s", tc.method, tc.path, golden, body)
		}
	}
}

// encodingFake adds the StatusEncoder capability to a Fake.
type encodingFake struct{ *apitest.Fake }

func (e encodingFake) StatusJSON(ctx context.Context) ([]byte, error) {
	st, err := e.Status(ctx)
	if err != nil {
		return nil, err
	}
	return api.EncodeStatus(st)
}
