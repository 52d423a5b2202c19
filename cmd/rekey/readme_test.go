package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/store"
)

// readmeAPICommands returns the shell lines of the README's "Using the local
// API" section: every line of its sh blocks that is not a comment.
func readmeAPICommands(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Using the local API\n")
	if !ok {
		t.Fatal(`README.md has no "## Using the local API" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var lines []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```sh":
			in = true
		case line == "```":
			in = false
		case in && line != "" && !strings.HasPrefix(line, "#"):
			lines = append(lines, line)
		}
	}
	return lines
}

// TestReadmeCurlExamplesWorkAsWritten runs the README's curl commands with the
// real curl against the real agent. The only changes: SOCK, PW, CLIENT_ID,
// KEY_ID and KEY_FILE come from the environment (the README sets them with
// assignments and `read`), the placeholders IMPORT_ID, TENANT_ID and
// CREDENTIAL_ID become real ids, and a .curlrc makes curl print the HTTP
// status after the body.
func TestReadmeCurlExamplesWorkAsWritten(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed for this test (apt-get install curl; .ci/run installs it): %v", err)
	}
	lines := readmeAPICommands(t)
	var commands []string
	var events string
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "SOCK="), strings.HasPrefix(line, "read -rs PW"), strings.HasPrefix(line, "CLIENT_ID="):
		case !strings.Contains(line, curl[strings.LastIndex(curl, "/")+1:]+" "):
			t.Fatalf("README line is neither setup nor a curl command: %q", line)
		case strings.HasSuffix(line, "/v1/events"):
			events = line
		default:
			commands = append(commands, line)
		}
	}
	joined := strings.Join(commands, "\n")
	for _, want := range []string{"/v1/health", "/v1/status", "/v1/imports", "/unlock", "/rotate", "/check"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("README examples lack %s:\n%s", want, joined)
		}
	}
	if events == "" {
		t.Fatal("README examples lack the /v1/events command")
	}

	const pw = "readme pass 4b1d"
	l := startLiveAgent(t, map[string]string{payload.KeyAuthCheck: payload.AuthOff})
	a := l.key("", true)
	addE := l.entry("readme-add", "Acme", payload.IntentAdd, a, livePassphrase)
	l.push(addE)
	l.waitImport(addE.ImportID, store.ImportApplied)
	l.waitSync()

	curlHome := t.TempDir()
	if err := os.WriteFile(filepath.Join(curlHome, ".curlrc"), []byte("write-out = \"\\n%{http_code}\\n\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next := l.key(a.ClientID, true) // the key the README's rotation changes to
	keyFile := filepath.Join(curlHome, "AuthKey.p8")
	if err := os.WriteFile(keyFile, next.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SOCK="+l.socket, "PW="+pw, "CURL_HOME="+curlHome, "HOME="+curlHome,
		"CLIENT_ID="+next.ClientID, "KEY_ID="+next.KeyID, "KEY_FILE="+keyFile)
	tenant := statusJSON(t, l.socket).Tenants[0]
	streamed := newSyncBuffer()
	follow := exec.Command("bash", "-c", events)
	follow.Env, follow.Stdout, follow.Stderr = env, streamed, streamed
	follow.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-follow.Process.Pid, syscall.SIGKILL); follow.Wait() }()
	l.untilFollowed(t, streamed)

	b := l.key(a.ClientID, false)
	updE := l.entry("readme-rotate", "Acme 2027", payload.IntentAuto, b, pw)
	l.push(updE)
	l.waitImport(updE.ImportID, store.ImportPendingUnlock)

	for _, c := range commands {
		c = strings.NewReplacer("IMPORT_ID", updE.ImportID, "TENANT_ID", tenant.ID, "CREDENTIAL_ID", tenant.Active.ID).Replace(c)
		cmd := exec.Command("bash", "-c", c)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
		answer := strings.TrimRight(string(out), "\n")
		i := strings.LastIndex(answer, "\n")
		body, code := answer[:max(i, 0)], answer[i+1:]
		if !strings.HasPrefix(code, "2") || !json.Valid([]byte(body)) {
			t.Fatalf("%s\nanswered %s: %s", c, code, body)
		}
		var imp store.Import
		if strings.Contains(c, "/unlock") && (json.Unmarshal([]byte(body), &imp) != nil || imp.State != store.ImportApplied) {
			t.Fatalf("unlock from the README did not apply the import: %s", body)
		}
		var rot api.RotationAnswer
		if strings.Contains(c, "/rotate") && (json.Unmarshal([]byte(body), &rot) != nil || rot.Rotation.Step != store.StepConfirmed) {
			t.Fatalf("the rotation from the README did not confirm: %s", body)
		}
	}
	streamed.waitFor(t, `"state":"applied"`)
	applied := false
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(streamed.String())), []byte("\n")) {
		if !json.Valid(line) {
			t.Fatalf("event line is not JSON: %s", line)
		}
		applied = applied || bytes.Contains(line, []byte(`"import_id":"readme-rotate"`)) && bytes.Contains(line, []byte(`"state":"applied"`))
	}
	if !applied {
		t.Fatalf("the followed events lack the unlocked import being applied:\n%s", streamed.String())
	}
}

// TestDocumentedSocketPathsAreTheDefaults: a copied curl example reaches the
// agent only when its --unix-socket is a platform's default socket (or $SOCK).
func TestDocumentedSocketPathsAreTheDefaults(t *testing.T) {
	re := regexp.MustCompile(`--unix-socket\s+("?[^\s"]+"?)`)
	for _, doc := range []string{"../../README.md", "../../docs/api.md", "../../docs/admin-guide.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n++
			switch strings.Trim(m[1], `"`) {
			case "/run/rekey/rekey.sock", "/var/run/rekey.sock", "$SOCK":
			default:
				t.Errorf("%s: curl --unix-socket %s is neither platform's default socket", doc, m[1])
			}
		}
		if doc != "../../docs/admin-guide.md" && n == 0 {
			t.Errorf("%s has no curl --unix-socket example; is the pattern stale?", doc)
		}
	}
}
