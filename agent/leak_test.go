package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/apple/appletest"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// withDebugLog sends the agent's log, at debug level, as JSON lines to w.
func withDebugLog(w io.Writer) harnessOption {
	return func(c *agent.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// rawGet is GET path over the agent's socket, returning the status and the body as sent.
func rawGet(t *testing.T, sock, path string) (int, []byte) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://rekey" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read GET %s: %v", path, err)
	}
	return resp.StatusCode, body
}

// secretSet is every secret of a test, by a name to report instead of its value.
type secretSet map[string]string

// addKey adds a private key: its PEM text, its base64 body and chunks of it.
func (s secretSet) addKey(name string, k appletest.Key) {
	s[name+" PEM"] = string(k.PEM)
	s.addBase64(name, string(k.PEM))
}

// addCiphertext adds armored age text and chunks of its body.
func (s secretSet) addCiphertext(name string, ct []byte) {
	s[name+" armored"] = string(ct)
	s.addBase64(name, string(ct))
}

// addBase64 adds the base64 body of a PEM-style block and every aligned
// 20-character chunk of each of its lines, so that a partial leak of 39
// characters or more is caught too.
func (s secretSet) addBase64(name, block string) {
	const chunk = 20
	var body strings.Builder
	for i, line := range strings.Split(block, "\n") {
		if line == "" || strings.HasPrefix(line, "-----") {
			continue
		}
		body.WriteString(line)
		for j := 0; j+chunk <= len(line); j += chunk {
			s[fmt.Sprintf("%s line %d chunk %d", name, i, j/chunk)] = line[j : j+chunk]
		}
	}
	s[name+" base64 body"] = body.String()
}

// check fails the test when where holds any secret (also JSON-escaped).
func (s secretSet) check(t *testing.T, where string, data []byte) {
	t.Helper()
	for name, secret := range s {
		escaped, _ := json.Marshal(secret)
		if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, escaped[1:len(escaped)-1]) {
			t.Errorf("%s holds the %s", where, name)
		}
	}
}

func TestNoSecretLeaksThroughAPILogsEventsOrStatusFile(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, withDebugLog(&logs))
	ctx := context.Background()
	client := waitAPI(t, h.socket)
	streamed := followEvents(t, client)

	const interactivePW, wrongPW = "interactive pass 7f3a", "wrong guess 91c2"
	a, c := h.key(""), h.key("")
	addE := h.entry("Acme", payload.IntentAdd, "", a, testPassphrase)
	addE.ImportID = "leak-add"
	lockedE := h.entry("Globex", payload.IntentAuto, "", c, interactivePW)
	lockedE.ImportID = "leak-locked"
	secrets := secretSet{"fleet passphrase": testPassphrase, "interactive password": interactivePW, "wrong password": wrongPW}
	secrets.addKey("key A", a)
	secrets.addKey("key C", c)
	secrets.addCiphertext("add ciphertext", addE.Ciphertext)
	secrets.addCiphertext("locked ciphertext", lockedE.Ciphertext)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	h.push(addE)
	h.waitImport(addE.ImportID, store.ImportApplied)
	h.waitFor("first sync", func(e store.Event) bool { return e.Kind == store.EvSyncFinished })
	b := h.key(a.ClientID) // Apple now knows the rotated key only
	updE := h.entry("Acme 2", payload.IntentUpdate, "Acme", b, testPassphrase)
	updE.ImportID = "leak-update"
	secrets.addKey("key B", b)
	secrets.addCiphertext("update ciphertext", updE.Ciphertext)
	h.push(addE, updE)
	h.waitImport(updE.ImportID, store.ImportApplied)
	h.push(addE, updE, lockedE)
	h.waitImport(lockedE.ImportID, store.ImportPendingUnlock)

	_, err := client.Unlock(ctx, lockedE.ImportID, api.UnlockRequest{Password: api.Secret(wrongPW)})
	if !errors.Is(err, api.ErrWrongPassword) {
		t.Fatalf("unlock with a wrong password: %v, want ErrWrongPassword", err)
	}
	secrets.check(t, "the wrong-password error", []byte(err.Error()))
	unlocked, err := client.Unlock(ctx, lockedE.ImportID, api.UnlockRequest{Password: api.Secret(interactivePW)})
	if err != nil {
		t.Fatalf("unlock with the right password: %v", err)
	}
	answer, _ := json.Marshal(unlocked)
	secrets.check(t, "the unlock answer", answer)
	h.waitImport(lockedE.ImportID, store.ImportApplied)
	lastLine := streamed.until(t, func(e store.Event) bool {
		return e.Kind == store.EvImportState && e.ImportID == lockedE.ImportID && e.Fields["state"] == string(store.ImportApplied)
	})
	secrets.check(t, "the /v1/events stream", lastLine)

	checkEveryAnswer(t, h, secrets)
	events, err := h.agent.Store().Events(ctx, 0, 100000)
	if err != nil || len(events) < 10 {
		t.Fatalf("audit log: %d events, %v", len(events), err)
	}
	for _, e := range events {
		line, _ := json.Marshal(e)
		secrets.check(t, "audit event "+string(e.Kind), line)
	}

	h.stop() // the status file is written once more on the way out; the log is complete
	status, err := os.ReadFile(filepath.Join(h.state, "status.plist"))
	if err != nil || !bytes.Contains(status, []byte(b.KeyID)) {
		t.Fatalf("status file should name the active key %s: %v\n%s", b.KeyID, err, status)
	}
	secrets.check(t, "the status file", status)
	log := logs.String()
	if strings.Count(log, "\n") < 20 || !strings.Contains(log, `"level":"DEBUG"`) {
		t.Fatalf("debug log looks empty (%d lines):\n%s", strings.Count(log, "\n"), log)
	}
	for i, line := range strings.Split(log, "\n") {
		secrets.check(t, fmt.Sprintf("log line %d", i+1), []byte(line))
	}
	secrets.check(t, "the whole log", []byte(log))
	if !strings.Contains(log, lockedE.ImportID) {
		t.Errorf("the log never names import %s; is it the agent's log?", lockedE.ImportID)
	}
}

// checkEveryAnswer GETs every read endpoint, including each import and each
// tenant's devices, and checks the raw answers.
func checkEveryAnswer(t *testing.T, h *harness, secrets secretSet) {
	t.Helper()
	paths := []string{"/v1/health", "/v1/status", "/v1/credentials", "/v1/tenants", "/v1/imports", "/v1/rotations"}
	imps, err := h.agent.Store().Imports(context.Background())
	if err != nil || len(imps) != 3 {
		t.Fatalf("imports: %d, %v", len(imps), err)
	}
	for _, imp := range imps {
		paths = append(paths, "/v1/imports/"+imp.ID)
	}
	tenants, err := h.agent.Store().Tenants(context.Background())
	if err != nil || len(tenants) != 2 {
		t.Fatalf("tenants: %d, %v", len(tenants), err)
	}
	for _, tn := range tenants {
		paths = append(paths, "/v1/tenants/"+tn.ID+"/devices")
	}
	for _, p := range paths {
		code, body := rawGet(t, h.socket, p)
		if code != http.StatusOK || !json.Valid(body) {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		secrets.check(t, "GET "+p, body)
	}
}

// eventLines collects the raw lines of a /v1/events stream.
type eventLines struct {
	lines chan []byte
}

// followEvents opens the event stream now and collects it until the test ends.
func followEvents(t *testing.T, c *api.Client) *eventLines {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Events(ctx)
	if err != nil {
		t.Fatalf("open event stream: %v", err)
	}
	el := &eventLines{lines: make(chan []byte, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(el.lines)
		for {
			if _, err := stream.Next(); err != nil {
				return
			}
			el.lines <- append([]byte(nil), stream.Line()...)
		}
	}()
	t.Cleanup(func() { cancel(); stream.Close(); <-done })
	return el
}

// until reads streamed lines until one decodes to an event that matches,
// returning every line read, newline-separated.
func (el *eventLines) until(t *testing.T, match func(store.Event) bool) []byte {
	t.Helper()
	var all bytes.Buffer
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-el.lines:
			if !ok {
				t.Fatalf("event stream ended early; read so far:\n%s", all.Bytes())
			}
			all.Write(line)
			all.WriteByte('\n')
			var e store.Event
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("event line is not JSON: %s", line)
			}
			if match(e) {
				return all.Bytes()
			}
		case <-deadline.C:
			t.Fatalf("timed out reading the event stream; read so far:\n%s", all.Bytes())
		}
	}
}

// waitAPI returns a client once the agent answers on sock: Run opens the
// socket after recovery, so a freshly started harness may not listen yet.
func waitAPI(t testing.TB, sock string) *api.Client {
	t.Helper()
	c := api.NewClient(sock)
	t.Cleanup(c.Close)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Health(context.Background())
		if err == nil {
			return c
		}
		if !errors.Is(err, api.ErrAgentNotRunning) || time.Now().After(deadline) {
			t.Fatalf("agent API on %s: %v", sock, err)
		}
		time.Sleep(5 * time.Millisecond) // the OS creating the socket is what we wait for
	}
}
