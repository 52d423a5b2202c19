package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/doctor"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/agent/payload/plisttest"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

func TestReferenceBombPayloadIsRefusedOnceAndTheAgentGoesOn(t *testing.T) {
	h := newHarness(t)
	bomb := plisttest.Bomb(7, 14) // ~105 million objects once decoded
	if err := platform.WriteFileAtomic(h.payloadPath(), bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	e := h.waitFor("the bomb refused", func(e store.Event) bool { return e.Kind == store.EvSourceRefused })
	if !strings.Contains(e.Message, "100000 objects") {
		t.Fatalf("refusal %q does not name the limit", e.Message)
	}
	r := doctor.Run(context.Background(), doctor.Config{StateDir: h.state, PrefsDir: h.prefs, PassphraseFile: h.pass,
		Socket: h.socket, Owners: platform.DefaultTrust().Owners})
	var found bool
	for _, f := range r.Findings {
		found = found || f.Check == "managed-prefs" && f.Level == doctor.Fail && strings.Contains(f.Message, "100000 objects")
	}
	if !found {
		t.Fatalf("doctor does not report the bomb: %+v", r.Findings)
	}

	h.agent.Rescan() // a rescan of the same file reports nothing new
	k := h.key("")
	h.push(withID("after-bomb", h.entry("Acme", payload.IntentAdd, "", k, testPassphrase)))
	h.waitFor("the next payload applied", func(e store.Event) bool {
		if e.Kind == store.EvSourceRefused {
			t.Fatalf("refused again: %s", e.Message)
		}
		return e.Kind == store.EvImportState && e.ImportID == "after-bomb" && e.Fields["state"] == string(store.ImportApplied)
	})
}
