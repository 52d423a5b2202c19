package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
)

// endpoints is one request per route, as the unprivileged child sends them.
var endpoints = []struct{ method, path string }{
	{"GET", "/v1/health"},
	{"GET", "/v1/status"},
	{"GET", "/v1/credentials"},
	{"GET", "/v1/tenants"},
	{"GET", "/v1/tenants/t1/devices"},
	{"POST", "/v1/tenants/t1/rollback"},
	{"POST", "/v1/tenants/t1/sync"},
	{"GET", "/v1/imports"},
	{"GET", "/v1/imports/i1"},
	{"POST", "/v1/imports/i1/unlock"},
	{"POST", "/v1/imports/i1/dismiss"},
	{"GET", "/v1/rotations"},
	{"GET", "/v1/events"},
}

const childEnv = "REKEY_API_TEST_CHILD_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(childEnv); sock != "" {
		os.Exit(childRequests(sock))
	}
	os.Exit(m.Run())
}

// childRequests runs in a re-executed test binary under another uid: it
// sends every endpoint once and prints "METHOD PATH STATUS" lines.
func childRequests(sock string) int {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, e := range endpoints {
		req, _ := http.NewRequest(e.method, "http://rekey"+e.path, strings.NewReader("{}"))
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if e.path != "/v1/events" {
			io.Copy(io.Discard, resp.Body)
		}
		resp.Body.Close()
		fmt.Printf("%s %s %d\n", e.method, e.path, resp.StatusCode)
	}
	return 0
}

// runAsNobody serves the fake with adminGroup and returns the child's
// status per endpoint.
func runAsNobody(t *testing.T, adminGroup string) map[string]int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child process as another uid")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("needs a nobody user: %v", err)
	}
	sock, _ := apitest.Serve(t, api.Config{Backend: sampleFake(), AdminGroup: adminGroup})
	dir := filepath.Dir(sock)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	copyExecutable(t, bin)
	var uid, gid uint32
	fmt.Sscan(nobody.Uid, &uid)
	fmt.Sscan(nobody.Gid, &gid)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), childEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m, p string
		var code int
		fmt.Sscan(line, &m, &p, &code)
		got[m+" "+p] = code
	}
	if len(got) != len(endpoints) {
		t.Fatalf("child answered %d endpoints, want %d:\n%s", len(got), len(endpoints), out)
	}
	return got
}

func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestOtherUserOutsideAdminGroupGets403EverywhereButHealth(t *testing.T) {
	got := runAsNobody(t, "root")
	for key, code := range got {
		want := http.StatusForbidden
		if key == "GET /v1/health" {
			want = http.StatusOK
		}
		if code != want {
			t.Errorf("%s: %d, want %d", key, code, want)
		}
	}
}

func TestAdminGroupMemberIsAuthorised(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Fatal(err)
	}
	for key, code := range runAsNobody(t, g.Name) {
		if code == http.StatusForbidden {
			t.Errorf("%s: 403 for a member of the admin group", key)
		}
	}
}

func TestListenRefusesARegularFileAndLeavesItAlone(t *testing.T) {
	path := filepath.Join(apitest.ShortTempDir(t), "rekey.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := api.Listen(path)
	if !errors.Is(err, api.ErrNotSocket) || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("err %v, want ErrNotSocket naming a regular file", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "precious" {
		t.Fatalf("file changed: %q", data)
	}
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(apitest.ShortTempDir(t), "rekey.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // a crashed agent: the socket file stays, nobody answers
	l, err := api.Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o666 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v, err %v; want a socket with mode 0666", fi.Mode(), err)
	}
}

func TestListenRefusesALiveSocket(t *testing.T) {
	sock, _ := apitest.Serve(t, api.Config{Backend: sampleFake()})
	_, err := api.Listen(sock)
	if !errors.Is(err, api.ErrSocketInUse) || !strings.Contains(err.Error(), "is listening on the socket") {
		t.Fatalf("err %v, want ErrSocketInUse", err)
	}
	if _, err := api.NewClient(sock).Health(context.Background()); err != nil {
		t.Fatalf("the live agent was disturbed: %v", err)
	}
}

func TestListenCreatesTheSocketFolder(t *testing.T) {
	dir := filepath.Join(apitest.ShortTempDir(t), "rekey")
	l, err := api.Listen(filepath.Join(dir, "rekey.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("socket folder %v, err %v; want a folder with mode 0755", fi, err)
	}
	_, err = api.Listen(filepath.Join(dir, "missing", "deeper", "rekey.sock"))
	if err == nil || !strings.Contains(err.Error(), "create its parent") {
		t.Fatalf("err %v, want a refusal to create more than the socket's own folder", err)
	}
}
