package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// rawPost is POST path with body over the agent's socket, returning the status and the body as sent.
func rawPost(t *testing.T, sock, path string, body []byte) (int, []byte) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Post("http://rekey"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read POST %s: %v", path, err)
	}
	return resp.StatusCode, out
}

// credentialJSON is a manual rotation or add body holding k's PEM.
func credentialJSON(t *testing.T, name string, k appletest.Key, extra map[string]string) []byte {
	t.Helper()
	m := map[string]string{"name": name, "client_id": k.ClientID, "key_id": k.KeyID, "private_key": string(k.PEM)}
	for key, v := range extra {
		m[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNoSecretLeaksThroughTheManualWorkflows(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, withDebugLog(&logs), noRetries)
	h.settings[payload.KeyAuthCheck] = payload.AuthRequired
	client := waitAPI(t, h.socket)
	streamed := followEvents(t, client)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	a := h.key("")
	rejected, err := appletest.GenerateKey(a.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := appletest.GenerateKey(a.ClientID) // registered after the add: Apple knows one key per client
	if err != nil {
		t.Fatal(err)
	}
	late, err := appletest.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretSet{"fleet passphrase": testPassphrase}
	for name, k := range map[string]appletest.Key{"key A": a, "rejected key": rejected, "key C": c, "late key": late} {
		secrets.addKey(name, k)
	}
	post := func(path string, body []byte, want int) []byte {
		t.Helper()
		code, answer := rawPost(t, h.socket, path, body)
		if code != want {
			t.Fatalf("POST %s: %d %s, want %d", path, code, answer, want)
		}
		secrets.check(t, "POST "+path, answer)
		return answer
	}

	var added api.AddAnswer
	json.Unmarshal(post("/v1/tenants", credentialJSON(t, "Acme", a,
		map[string]string{"token_url": h.apple.TokenURL(), "api_base_url": h.apple.APIBaseURL()}), http.StatusCreated), &added)
	rotate := "/v1/tenants/" + added.Tenant.ID + "/rotate"
	post(rotate, credentialJSON(t, "Acme typo", rejected, nil), http.StatusUnprocessableEntity)
	post(rotate, credentialJSON(t, "Acme typo", rejected, map[string]string{"auth_check": "sometimes"}), http.StatusBadRequest)
	h.apple.RegisterCredential(c.ClientID, c.KeyID, &c.Private.PublicKey)
	var rotated api.RotationAnswer
	json.Unmarshal(post(rotate, credentialJSON(t, "Acme 2027", c, nil), http.StatusOK), &rotated)
	post("/v1/credentials/"+rotated.Rotation.ToCredentialID+"/check", nil, http.StatusOK)
	post("/v1/credentials/"+added.Credential.ID+"/check", nil, http.StatusConflict) // retired, key wiped

	e := withID("late", h.entry("Initech", payload.IntentAdd, "", late, testPassphrase))
	secrets.addCiphertext("late ciphertext", e.Ciphertext)
	h.push(e)
	h.waitImport(e.ImportID, store.ImportFailed)
	post("/v1/imports/late/retry", nil, http.StatusUnprocessableEntity)
	h.apple.RegisterCredential(late.ClientID, late.KeyID, &late.Private.PublicKey)
	post("/v1/imports/late/retry", nil, http.StatusOK)
	lines := streamed.until(t, func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.ImportID == "late" && e.Fields["state"] == string(store.ImportApplied)
	})
	secrets.check(t, "the /v1/events stream", lines)

	paths := []string{"/v1/status", "/v1/credentials", "/v1/tenants", "/v1/imports", "/v1/rotations"}
	for _, imp := range h.imports() {
		paths = append(paths, "/v1/imports/"+imp.ID)
	}
	for _, p := range paths {
		code, body := rawGet(t, h.socket, p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		secrets.check(t, "GET "+p, body)
	}
	events, err := h.agent.Store().Events(context.Background(), 0, 100000)
	if err != nil || len(events) < 10 {
		t.Fatalf("audit log: %d events, %v", len(events), err)
	}
	for _, ev := range events {
		line, _ := json.Marshal(ev)
		secrets.check(t, "audit event "+string(ev.Kind), line)
	}
	h.stop()
	status, err := os.ReadFile(filepath.Join(h.state, "status.plist"))
	if err != nil || !bytes.Contains(status, []byte(c.KeyID)) {
		t.Fatalf("status file should name the active key %s: %v", c.KeyID, err)
	}
	secrets.check(t, "the status file", status)
	log := logs.String()
	if !strings.Contains(log, "manual") {
		t.Fatalf("the log never mentions the manual requests; is it the agent's log?\n%s", log)
	}
	for i, line := range strings.Split(log, "\n") {
		secrets.check(t, fmt.Sprintf("log line %d", i+1), []byte(line))
	}
}
