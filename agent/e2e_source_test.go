package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// End-to-end tests of the file side: replaced, removed and re-created files
// and folders, bursts of rewrites, reused ImportIDs, on a real agent.

func TestE2EFileReplacedByRename(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	first, second := h.key(""), h.key("")
	h.push(withID("first", h.entry("First", payload.IntentAdd, "", first, wrongPassphrase)))
	h.untilImport("first", store.ImportPendingUnlock)

	doc, err := payload.MarshalPayload([]payload.PayloadEntry{withID("second", h.entry("Second", payload.IntentAdd, "", second, testPassphrase))}, h.settings)
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(h.dir, "new-profile.plist") // outside the watched folder, same file system
	if err := os.WriteFile(staged, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, h.payloadPath()); err != nil {
		t.Fatal(err)
	}
	h.untilImport("second", store.ImportApplied)
	h.untilImport("first", store.ImportWithdrawn)
	if c := h.active(""); c.KeyID != second.KeyID {
		t.Fatalf("active after the replace: %+v", c)
	}
	h.healthy()
}

func TestE2EPrefsFolderDeletedAndRecreated(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	k, locked := h.key(""), h.key("")
	entries := []payload.PayloadEntry{
		withID("kept", h.entry("Kept", payload.IntentAdd, "", k, testPassphrase)),
		withID("locked", h.entry("Locked", payload.IntentAdd, "", locked, wrongPassphrase)),
	}
	h.push(entries...)
	h.untilImport("kept", store.ImportApplied)
	h.untilImport("locked", store.ImportPendingUnlock)

	if err := os.RemoveAll(h.prefs); err != nil {
		t.Fatal(err)
	}
	h.untilImport("locked", store.ImportWithdrawn)
	h.until("credential released to local", func() bool { return h.active("").Origin == store.OriginLocal })

	if err := os.MkdirAll(h.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	h.push(entries...)
	h.untilImport("locked", store.ImportPendingUnlock) // revived: its entry came back
	if got := h.imp("kept"); got.State != store.ImportApplied || got.Attempts != 1 {
		t.Fatalf("the applied import was attempted again: %+v", got)
	}
	if n := len(h.creds()); n != 1 {
		t.Fatalf("%d credentials, want 1", n)
	}

	// A dismissed import is not revived when its entry comes back.
	if imp, err := h.agent.Dismiss(context.Background(), "locked"); err != nil || imp.State != store.ImportDismissed {
		t.Fatalf("dismiss: %+v, %v", imp, err)
	}
	h.removePayload()
	h.push(append(entries, withID("marker", h.entry("Marker", payload.IntentAdd, "", h.key(""), testPassphrase)))...)
	h.untilImport("marker", store.ImportApplied)
	if got := h.imp("locked"); got.State != store.ImportDismissed {
		t.Fatalf("a dismissed import came back as %s", got.State)
	}
	h.healthy()
}

func TestE2EFolderCreatedAfterStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	h.stop()
	if err := os.RemoveAll(h.prefs); err != nil {
		t.Fatal(err)
	}
	h.start()
	if err := os.MkdirAll(h.prefs, 0o755); err != nil {
		t.Fatal(err)
	}
	k := h.key("")
	h.push(withID("late", h.entry("Late", payload.IntentAdd, "", k, testPassphrase)))
	h.untilImport("late", store.ImportApplied)
	if c := h.active(""); c.KeyID != k.KeyID {
		t.Fatalf("active: %+v", c)
	}
	h.healthy()
}

func TestE2EImportIDReusedWithOtherContentIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	k, other := h.key(""), h.key("")
	h.push(withID("same-id", h.entry("First", payload.IntentAdd, "", k, testPassphrase)))
	h.untilImport("same-id", store.ImportApplied)
	before := h.imp("same-id")

	h.push(withID("same-id", h.entry("Second", payload.IntentAdd, "", other, testPassphrase)))
	h.waitFor(string(store.EvImportConflict), func(e store.Event) bool { return e.Kind == store.EvImportConflict && e.ImportID == "same-id" })
	after := h.imp("same-id")
	if after.Hash != before.Hash || after.Name != "First" || after.State != store.ImportApplied {
		t.Fatalf("conflicting content changed the import: %+v", after)
	}
	if cs := h.creds(); len(cs) != 1 || cs[0].KeyID != k.KeyID {
		t.Fatalf("conflicting content was applied: %+v", cs)
	}
	h.healthy()
}

func TestE2EProfileRemovalDeletesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	a, b, c := h.key(""), h.key(""), h.key("")
	h.push(
		withID("applied", h.entry("Applied", payload.IntentAdd, "", a, testPassphrase)),
		withID("locked", h.entry("Locked", payload.IntentAdd, "", b, wrongPassphrase)),
		withID("no-target", h.entry("Orphan", payload.IntentUpdate, "nobody", c, testPassphrase)),
	)
	h.untilImport("applied", store.ImportApplied)
	h.untilImport("locked", store.ImportPendingUnlock)
	h.untilImport("no-target", store.ImportNeedsTarget)
	if got := h.active(""); got.Origin != store.OriginManaged {
		t.Fatalf("origin before removal: %s", got.Origin)
	}

	h.removePayload()
	h.untilImport("locked", store.ImportWithdrawn)
	h.untilImport("no-target", store.ImportWithdrawn)
	h.until("credential released to local", func() bool { return h.active("").Origin == store.OriginLocal })
	cred := h.active("")
	if cred.KeyID != a.KeyID || !cred.HasKey || len(h.creds()) != 1 || len(h.tenants()) != 1 {
		t.Fatalf("removal deleted or changed something: %+v, %d credentials", cred, len(h.creds()))
	}
	if got := h.imp("applied"); got.State != store.ImportApplied {
		t.Fatalf("the applied import became %s", got.State)
	}

	// Later payloads release nothing again: one release, recorded once.
	for i := range 2 {
		id := fmt.Sprintf("later-%d", i)
		h.push(withID(id, h.entry("Later", payload.IntentAdd, "", h.key(""), testPassphrase)))
		h.untilImport(id, store.ImportApplied)
	}
	released := func() map[string]int {
		evs, err := h.agent.Store().Events(context.Background(), 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, e := range evs {
			if e.Kind == store.EvCredentialReleased {
				n[e.ImportID]++
			}
		}
		return n
	}
	h.until("later-0 released", func() bool { return released()["later-0"] > 0 })
	if _, err := h.agent.Status(context.Background()); err != nil { // waits for the snapshot being handled
		t.Fatal(err)
	}
	if released := released(); released["applied"] != 1 || released["later-0"] != 1 || len(released) != 2 {
		t.Fatalf("credential.released events per import: %v; want one for each entry that left", released)
	}
	h.healthy()
}

// A burst of 1,000 rewrites converges on the last content: the stable entry
// and the final one are applied exactly once, every intermediate entry is
// either never seen or withdrawn, and only the final content's credentials
// exist. Intermediate entries need a password nobody gives, so whether the
// agent sees them or not cannot create a credential.
func TestE2EBurstOfRewritesConverges(t *testing.T) {
	t.Parallel()
	h := newHarness(t).noSync()
	stableKey, finalKey, passing := h.key(""), h.key(""), h.key("")
	stable := withID("stable", h.entry("Stable", payload.IntentAdd, "", stableKey, testPassphrase))
	locked := h.entry("Passing", payload.IntentAdd, "", passing, wrongPassphrase)
	final := withID("final", h.entry("Final", payload.IntentAdd, "", finalKey, testPassphrase))

	const rewrites = 1000
	docs := make([][]byte, rewrites)
	for i := range docs {
		entries := []payload.PayloadEntry{stable, withID(fmt.Sprintf("burst-%d", i), locked)}
		if i == rewrites-1 {
			entries = []payload.PayloadEntry{stable, final}
		}
		doc, err := payload.MarshalPayload(entries, h.settings)
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = doc
	}
	written := make(chan error, 1)
	go func() { // write, rename into place; no fsync: the burst is about the watcher, not the disk
		tmp := filepath.Join(h.dir, "burst.plist")
		for _, doc := range docs {
			if err := os.WriteFile(tmp, doc, 0o644); err != nil {
				written <- err
				return
			}
			if err := os.Rename(tmp, h.payloadPath()); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	for writing := true; writing; { // read the events meanwhile so that the stream keeps up
		select {
		case err := <-written:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		case _, ok := <-h.events:
			if !ok {
				t.Fatal("event stream dropped during the burst")
			}
		}
	}
	h.untilImport("final", store.ImportApplied)
	h.untilImport("stable", store.ImportApplied)
	ctx := context.Background()
	h.until("every intermediate import withdrawn", func() bool {
		imps, err := h.agent.Store().Imports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range imps {
			if strings.HasPrefix(imp.ID, "burst-") && imp.State != store.ImportWithdrawn {
				return false
			}
		}
		return true
	})

	evs, err := h.agent.Store().Events(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]int{}
	for _, e := range evs {
		if e.Kind == store.EvImportState && e.Fields["state"] == string(store.ImportApplied) {
			applied[e.ImportID]++
		}
	}
	if len(applied) != 2 || applied["stable"] != 1 || applied["final"] != 1 {
		t.Fatalf("applied events per import: %v; want stable and final once each", applied)
	}
	keys := map[string]bool{}
	for _, c := range h.creds() {
		if c.State != store.CredActive {
			t.Fatalf("credential %q is %s", c.Name, c.State)
		}
		keys[c.KeyID] = true
	}
	if len(keys) != 2 || !keys[stableKey.KeyID] || !keys[finalKey.KeyID] {
		t.Fatalf("credentials after the burst: %v; want exactly the final content's two", keys)
	}
	for _, id := range []string{"stable", "final"} {
		if imp := h.imp(id); imp.State != store.ImportApplied || imp.Attempts != 1 {
			t.Fatalf("import %s: %+v", id, imp)
		}
	}
	h.healthy()
}
