package packaging

import (
	"os"
	"regexp"
	"testing"

	"github.com/google/uuid"
	"github.com/rekeyd/rekey/platform"
	"howett.net/plist"
)

const serviceManagementFile = "profiles/rekey-service-management.mobileconfig"

// btmProfile is the part of a com.apple.servicemanagement profile the checks
// read.
type btmProfile struct {
	PayloadType    string
	PayloadUUID    string
	PayloadScope   string
	PayloadContent []struct {
		PayloadType string
		PayloadUUID string
		Rules       []struct {
			RuleType  string
			RuleValue string
			Comment   string
		}
	}
}

// TestServiceManagementProfileAllowsTheDaemon checks the Background Task
// Management example: a system profile whose rules name the launchd label
// the package installs, and a TeamIdentifier rule shaped like a Team ID.
func TestServiceManagementProfileAllowsTheDaemon(t *testing.T) {
	data, err := os.ReadFile(serviceManagementFile)
	if err != nil {
		t.Fatal(err)
	}
	var p btmProfile
	if _, err := plist.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	if p.PayloadType != "Configuration" || p.PayloadScope != "System" || len(p.PayloadContent) != 1 {
		t.Fatalf("profile type %q scope %q, %d payloads; want one payload in a System Configuration", p.PayloadType, p.PayloadScope, len(p.PayloadContent))
	}
	inner := p.PayloadContent[0]
	if inner.PayloadType != "com.apple.servicemanagement" {
		t.Fatalf("payload type %q", inner.PayloadType)
	}
	for _, u := range []string{p.PayloadUUID, inner.PayloadUUID} {
		if _, err := uuid.Parse(u); err != nil {
			t.Errorf("PayloadUUID %q: %v", u, err)
		}
	}
	if p.PayloadUUID == inner.PayloadUUID {
		t.Error("outer and inner PayloadUUID are the same")
	}
	teamID := regexp.MustCompile(`^[A-Z0-9]{10}$`)
	got := map[string]string{}
	for _, r := range inner.Rules {
		got[r.RuleType] = r.RuleValue
		if r.Comment == "" {
			t.Errorf("rule %s has no Comment for the admin", r.RuleType)
		}
	}
	if got["Label"] != platform.LaunchdLabel {
		t.Errorf("Label rule %q, want %q", got["Label"], platform.LaunchdLabel)
	}
	if !teamID.MatchString(got["TeamIdentifier"]) {
		t.Errorf("TeamIdentifier rule %q is not shaped like a Team ID", got["TeamIdentifier"])
	}
	if len(got) != 2 {
		t.Errorf("rules %v, want a Label and a TeamIdentifier rule", got)
	}
}
