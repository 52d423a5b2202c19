package statusfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func sampleStatus() api.Status {
	return api.Status{
		Agent:  api.AgentInfo{Version: "1.2.3", PID: 4242, UID: 0, Started: t0},
		Source: api.SourceInfo{Path: "/Library/Managed Preferences", LastRead: t0.Add(time.Minute), LastError: "com.github.rekeyd.rekey.plist: group-writable; fix with chmod g-w"},
		Tenants: []api.TenantStatus{{
			ID: "t1", Name: "Acme Business", Scope: "business.api",
			Active:   &api.CredentialSummary{ID: "c2", Name: "Acme 2026", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2026", Since: t0.Add(2 * time.Hour)},
			Previous: &api.CredentialSummary{ID: "c1", Name: "Acme 2025", ClientID: "BUSINESSAPI.9f1c", KeyID: "k-2025", Since: t0.Add(-24 * time.Hour)},
			Devices:  1200, Coverage: 950, LastSync: t0.Add(3 * time.Hour),
		}, {
			ID: "t2", Name: "School", Scope: "school.api",
			Active:        &api.CredentialSummary{ID: "c3", Name: "School", ClientID: "SCHOOLAPI.aa", KeyID: "k-s"},
			LastSyncError: "token endpoint unreachable",
		}},
		PendingImports: []store.Import{{ID: "i9", Name: "Acme 2027", State: store.ImportPendingUnlock}},
		LastRotation:   &store.Rotation{ID: "r1", TenantID: "t1", Step: store.StepCutover, UpdatedAt: t0.Add(2 * time.Hour)},
	}
}

func TestEncodeMatchesGolden(t *testing.T) {
	got, err := Encode(sampleStatus(), t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "status.plist")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("status plist differs from %s (run with -update to accept):\n%s", golden, got)
	}
}

func TestEmptyStatusIsAValidPlist(t *testing.T) {
	data, err := Encode(api.Status{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := plist.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m["TenantCount"] != uint64(0) || m["PendingImports"] != uint64(0) || m["SourceOK"] != true {
		t.Fatalf("decoded %v", m)
	}
	if _, ok := m["LastRotationStep"]; ok {
		t.Fatal("absent rotation should leave its keys out")
	}
}

func TestWriteIsAtomicReadableAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.plist")
	if err := Write(path, api.Status{}, t0); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, sampleStatus(), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != Mode {
		t.Fatalf("mode %v, err %v", fi.Mode(), err)
	}
	var m struct {
		LastUpdate time.Time
		Tenants    []struct{ ActiveCredentialName string }
	}
	data, _ := os.ReadFile(path)
	if _, err := plist.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if !m.LastUpdate.Equal(t0.Add(time.Hour)) || len(m.Tenants) != 2 || m.Tenants[0].ActiveCredentialName != "Acme 2026" {
		t.Fatalf("decoded %+v", m)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestWriteIntoMissingFolderFails(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "missing", "status.plist"), api.Status{}, t0)
	if err == nil || !strings.Contains(err.Error(), "write status file") {
		t.Fatalf("err %v", err)
	}
}
