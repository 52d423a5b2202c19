package agent_test

import (
	"context"
	"os"
	"strings"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// wrongPassphrase seals payloads that the passphrase file does not open.
const wrongPassphrase = "a passphrase the fleet file does not hold"

// Helpers of the end-to-end and crash tests, beside the shared harness.

// until waits, event by event, until cond holds. Every change the agent
// makes publishes an event, so re-checking after each one never misses it.
func (h *harness) until(what string, cond func() bool) {
	h.t.Helper()
	if cond() {
		return
	}
	h.waitFor(what, func(store.Event) bool { return cond() })
}

// imp reads one import from the store.
func (h *harness) imp(id string) store.Import {
	h.t.Helper()
	imp, err := h.agent.Store().Import(context.Background(), id)
	if err != nil {
		h.t.Fatalf("read import %s: %v", id, err)
	}
	return imp
}

// untilImport waits until import id is in state and returns it.
func (h *harness) untilImport(id string, state store.ImportState) store.Import {
	h.t.Helper()
	h.until("import "+id+" "+string(state), func() bool {
		imp, err := h.agent.Store().Import(context.Background(), id)
		return err == nil && imp.State == state
	})
	return h.imp(id)
}

// creds lists every credential in the store.
func (h *harness) creds() []store.Credential {
	h.t.Helper()
	cs, err := h.agent.Store().Credentials(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// tenants lists every tenant in the store.
func (h *harness) tenants() []store.Tenant {
	h.t.Helper()
	ts, err := h.agent.Store().Tenants(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return ts
}

// activeByName returns the active credential named name (case-insensitive).
func (h *harness) activeByName(name string) store.Credential {
	h.t.Helper()
	var found []store.Credential
	for _, c := range h.creds() {
		if c.State == store.CredActive && strings.EqualFold(c.Name, name) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("want one active credential named %q, have %+v", name, found)
	}
	return found[0]
}

// unlock calls the agent's Unlock the way the local API does.
func (h *harness) unlock(id, password, intent, target string) (store.Import, error) {
	h.t.Helper()
	req := api.UnlockRequest{Intent: intent, Target: target}
	if password != "" {
		req.Password = api.Secret(password)
	}
	return h.agent.Unlock(context.Background(), id, req)
}

// withID gives an entry an explicit ImportID.
func withID(id string, e payload.PayloadEntry) payload.PayloadEntry {
	e.ImportID = id
	return e
}

// noSync turns background syncs off for tests that do not look at tenant data.
func (h *harness) noSync() *harness {
	h.settings[payload.KeySyncInterval] = "0"
	return h
}

// leaksNothing fails when any audit event or import reason holds one of secrets.
func (h *harness) leaksNothing(secrets ...string) {
	h.t.Helper()
	ctx := context.Background()
	evs, err := h.agent.Store().Events(ctx, 0, 100000)
	if err != nil {
		h.t.Fatal(err)
	}
	imps, err := h.agent.Store().Imports(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var text strings.Builder
	for _, e := range evs {
		text.WriteString(e.Message)
		for k, v := range e.Fields {
			text.WriteString(k + v)
		}
	}
	for _, imp := range imps {
		text.WriteString(imp.Reason)
	}
	for _, s := range secrets {
		if strings.Contains(text.String(), s) {
			h.t.Fatalf("a secret appears in the audit log or an import reason: %q", s)
		}
	}
}

// removePayload deletes the payload file, as an MDM does when a profile is removed.
func (h *harness) removePayload() {
	h.t.Helper()
	if err := os.Remove(h.payloadPath()); err != nil {
		h.t.Fatal(err)
	}
}
