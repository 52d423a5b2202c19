package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// sampleFake answers every endpoint with fixed records.
func sampleFake() *apitest.Fake {
	cred := store.Credential{ID: "c1", TenantID: "t1", Name: "Prod", ClientID: "BUSINESSAPI.1", KeyID: "k1", State: store.CredActive, HasKey: true, CreatedAt: t0}
	imp := store.Import{ID: "i1", Name: "Prod 2", Intent: "auto", State: store.ImportPendingUnlock, CreatedAt: t0, UpdatedAt: t0}
	return &apitest.Fake{
		StatusFunc: func(context.Context) (api.Status, error) {
			return api.Status{
				Agent:   api.AgentInfo{Version: "1.2.3", PID: 42, Started: t0},
				Tenants: []api.TenantStatus{{ID: "t1", Name: "Prod", Active: &api.CredentialSummary{ID: "c1", Name: "Prod"}, Devices: 3}},
			}, nil
		},
		CredentialsFunc: func(context.Context) ([]store.Credential, error) { return []store.Credential{cred}, nil },
		TenantsFunc: func(context.Context) ([]store.Tenant, error) {
			return []store.Tenant{{ID: "t1", Name: "Prod", CreatedAt: t0}}, nil
		},
		ImportsFunc: func(context.Context) ([]store.Import, error) { return []store.Import{imp}, nil },
		ImportFunc: func(_ context.Context, id string) (store.Import, error) {
			if id != "i1" {
				return store.Import{}, fmt.Errorf("import %s: %w", id, store.ErrNotFound)
			}
			return imp, nil
		},
		RotationsFunc: func(context.Context) ([]store.Rotation, error) {
			return []store.Rotation{{ID: "r1", TenantID: "t1", Step: store.StepCutover, StartedAt: t0}}, nil
		},
		DevicesFunc: func(_ context.Context, tenant string, q store.DeviceQuery) ([]store.Device, string, error) {
			serial := q.After + "X" + fmt.Sprint(q.Limit) + q.Coverage + q.SerialPrefix + q.Released
			if !q.EndBefore.IsZero() {
				serial += q.EndBefore.Format(time.DateOnly)
			}
			return []store.Device{{Serial: serial, AppleID: serial, Model: "MacBook Pro (14-inch, 2024)",
				ProductFamily: "Mac", Status: "ASSIGNED", CoverageState: store.CoverageActive,
				CoverageEnd: time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC), CoverageCheckedAt: t0, UpdatedAt: t0,
				Coverage: []store.Coverage{
					{ID: "AGR000000001", Serial: serial, Description: "AppleCare+", Status: "ACTIVE", PaymentType: "PAID_UP_FRONT",
						AgreementNumber: "AGR000000001", IsRenewable: true, StartDate: "2025-03-01T00:00:00Z", EndDate: "2028-03-01T00:00:00Z"},
					{ID: serial + "-C0", Serial: serial, Description: "Limited Warranty", Status: "INACTIVE", PaymentType: "NONE",
						StartDate: "2024-03-01T00:00:00Z", EndDate: "2025-03-01T00:00:00Z"},
				}}}, "next-" + tenant, nil
		},
		DismissFunc: func(_ context.Context, id string) (store.Import, error) {
			d := imp
			d.State = store.ImportDismissed
			return d, nil
		},
		RollbackFunc: func(context.Context, string) error { return nil },
		SyncFunc:     func(context.Context, string) error { return nil },
	}
}

func serveFake(t *testing.T, f *apitest.Fake) (*api.Client, string) {
	t.Helper()
	sock, _ := apitest.Serve(t, api.Config{Backend: f, Version: "1.2.3"})
	c := api.NewClient(sock)
	t.Cleanup(c.Close)
	return c, sock
}

func TestEveryEndpointAnswersThroughTheClient(t *testing.T) {
	f := sampleFake()
	c, sock := serveFake(t, f)
	ctx := context.Background()

	h, err := c.Health(ctx)
	if err != nil || h != (api.Health{Status: "ok", Version: "1.2.3"}) {
		t.Fatalf("health %+v, %v", h, err)
	}
	st, err := c.Status(ctx)
	want, _ := f.Status(ctx)
	if err != nil || !cmp.Equal(st, want, cmpopts.EquateEmpty()) {
		t.Fatalf("status: %v\n%s", err, cmp.Diff(want, st, cmpopts.EquateEmpty()))
	}
	creds, err := c.Credentials(ctx)
	if err != nil || len(creds) != 1 || creds[0].ClientID != "BUSINESSAPI.1" {
		t.Fatalf("credentials %+v, %v", creds, err)
	}
	tenants, err := c.Tenants(ctx)
	if err != nil || len(tenants) != 1 || tenants[0].ID != "t1" {
		t.Fatalf("tenants %+v, %v", tenants, err)
	}
	imps, err := c.Imports(ctx)
	if err != nil || len(imps) != 1 || imps[0].State != store.ImportPendingUnlock {
		t.Fatalf("imports %+v, %v", imps, err)
	}
	imp, err := c.Import(ctx, "i1")
	if err != nil || imp.ID != "i1" {
		t.Fatalf("import %+v, %v", imp, err)
	}
	rots, err := c.Rotations(ctx)
	if err != nil || len(rots) != 1 || rots[0].Step != store.StepCutover {
		t.Fatalf("rotations %+v, %v", rots, err)
	}
	page, err := c.Devices(ctx, "t1", store.DeviceQuery{After: "A1", Limit: 7, Coverage: "expired", SerialPrefix: "C02",
		Released: "only", EndBefore: time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil || page.Next != "next-t1" || page.Devices[0].Serial != "A1X7expiredC02only2027-03-01" {
		t.Fatalf("devices %+v, %v", page, err)
	}
	page, err = c.Devices(ctx, "t1", store.DeviceQuery{})
	if err != nil || page.Devices[0].Serial != fmt.Sprintf("X%d", api.DefaultPageSize) {
		t.Fatalf("devices default page %+v, %v", page, err)
	}
	for _, bad := range []string{"coverage=covered", "end_before=2027-13-01", "released=maybe", "limit=0"} {
		code, body := raw(t, sock, "GET", "/v1/tenants/t1/devices?"+bad, "")
		if code != http.StatusBadRequest || !strings.Contains(body, strings.Split(bad, "=")[0]) {
			t.Errorf("%s: %d %s, want 400 naming the parameter", bad, code, body)
		}
	}
	d, err := c.Dismiss(ctx, "i1")
	if err != nil || d.State != store.ImportDismissed {
		t.Fatalf("dismiss %+v, %v", d, err)
	}
	ts, err := c.Rollback(ctx, "t1")
	if err != nil || ts.ID != "t1" || ts.Active.ID != "c1" {
		t.Fatalf("rollback %+v, %v", ts, err)
	}
	sa, err := c.Sync(ctx, "t1")
	if err != nil || sa != (api.SyncAnswer{TenantID: "t1", Started: true}) {
		t.Fatalf("sync %+v, %v", sa, err)
	}
}

func TestUnlockPassesTheRequestAndWipesThePassword(t *testing.T) {
	f := sampleFake()
	var got api.UnlockRequest
	var seen string
	f.UnlockFunc = func(_ context.Context, id string, req api.UnlockRequest) (store.Import, error) {
		got, seen = req, string(req.Password)
		return store.Import{ID: id, State: store.ImportApplied}, nil
	}
	c, _ := serveFake(t, f)
	imp, err := c.Unlock(context.Background(), "i1", api.UnlockRequest{Password: api.Secret(`p"ä\ss`), Intent: "update", Target: "Prod"})
	if err != nil || imp.State != store.ImportApplied {
		t.Fatalf("unlock %+v, %v", imp, err)
	}
	if seen != `p"ä\ss` || got.Intent != "update" || got.Target != "Prod" {
		t.Fatalf("backend saw password %q intent %q target %q", seen, got.Intent, got.Target)
	}
	if !bytes.Equal(got.Password, make([]byte, len(got.Password))) {
		t.Fatalf("password bytes not wiped after the request: %q", got.Password)
	}
}

func TestErrorsMapToStatusesAndCodes(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("decrypt: %w", api.ErrWrongPassword), 422, "wrong_password"},
		{api.ErrPasswordRequired, 422, "password_required"},
		{api.ErrNeedsChoice, 409, "needs_choice"},
		{api.ErrBusy, 409, "busy"},
		{api.ErrInvalid, 400, "invalid_request"},
		{fmt.Errorf("import x: %w", store.ErrNotFound), 404, "not_found"},
		{store.ErrState, 409, "conflict"},
		{store.ErrImportConflict, 409, "import_conflict"},
		{errors.New("disk on fire"), 500, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			f := &apitest.Fake{DismissFunc: func(context.Context, string) (store.Import, error) { return store.Import{}, tt.err }}
			c, sock := serveFake(t, f)
			status, body := raw(t, sock, "POST", "/v1/imports/x/dismiss", "")
			var eb api.ErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || status != tt.status || eb.Error.Code != tt.code || eb.Error.Message != tt.err.Error() {
				t.Fatalf("status %d body %s; want %d %s", status, body, tt.status, tt.code)
			}
			_, err := c.Dismiss(context.Background(), "x")
			var ae *api.APIError
			if !errors.As(err, &ae) || ae.Code != tt.code || (tt.code != "internal" && !errors.Is(err, sentinel(tt.err))) {
				t.Fatalf("client error %#v does not carry %v", err, tt.err)
			}
		})
	}
}

func TestPasswordNeverAppearsInAnyAnswer(t *testing.T) {
	const pw = "hunter2-VERY-SECRET"
	f := sampleFake()
	f.UnlockFunc = func(_ context.Context, id string, req api.UnlockRequest) (store.Import, error) {
		return store.Import{}, fmt.Errorf("decrypt import %s: %w", id, api.ErrWrongPassword)
	}
	_, sock := serveFake(t, f)
	bodies := []string{
		`{"password":"` + pw + `"}`,
		`{"password":"` + pw + `","intent":"sideways"}`,
		`{"password":"` + pw + `","intent":"add","target":"x"}`,
		`{"password":"` + pw + `",`,
		`{"password":` + pw + `}`,
	}
	for _, b := range bodies {
		status, body := raw(t, sock, "POST", "/v1/imports/i1/unlock", b)
		if strings.Contains(body, pw) || status < 400 {
			t.Fatalf("answer %d %s to %s leaks the password or succeeded", status, body, b)
		}
	}
}

func TestBodiesAreBounded(t *testing.T) {
	f := sampleFake()
	f.UnlockFunc = func(context.Context, string, api.UnlockRequest) (store.Import, error) {
		t.Error("backend called with an oversized body")
		return store.Import{}, nil
	}
	_, sock := serveFake(t, f)
	big := `{"password":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`
	status, body := raw(t, sock, "POST", "/v1/imports/i1/unlock", big)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"body_too_large"`) {
		t.Fatalf("status %d body %s", status, body)
	}
}

func TestBadPageLimitAndUnknownRoutesAreJSONErrors(t *testing.T) {
	_, sock := serveFake(t, sampleFake())
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/tenants/t1/devices?limit=0", 400, "invalid_request"},
		{"GET", "/v1/tenants/t1/devices?limit=5000", 400, "invalid_request"},
		{"GET", "/v1/nothing", 404, "no_endpoint"},
		{"DELETE", "/v1/status", 405, "method_not_allowed"},
	} {
		status, body := raw(t, sock, tc.method, tc.path, "")
		var eb api.ErrorBody
		if json.Unmarshal([]byte(body), &eb) != nil || status != tc.status || eb.Error.Code != tc.code {
			t.Errorf("%s %s: %d %s; want %d %s", tc.method, tc.path, status, body, tc.status, tc.code)
		}
	}
}

func TestAuthorizeHookRefusesWith403ButHealthStaysOpen(t *testing.T) {
	var seen platform.Peer
	sock, _ := apitest.Serve(t, api.Config{Backend: sampleFake(), Authorize: func(p platform.Peer) bool { seen = p; return false }})
	if status, _ := raw(t, sock, "GET", "/v1/health", ""); status != 200 {
		t.Fatalf("health: %d", status)
	}
	status, body := raw(t, sock, "GET", "/v1/status", "")
	if status != 403 || !strings.Contains(body, `"forbidden"`) {
		t.Fatalf("status: %d %s", status, body)
	}
	if seen.PID == 0 || seen.UID < 0 {
		t.Fatalf("hook saw peer %+v", seen)
	}
}

func TestClientReportsAgentNotRunning(t *testing.T) {
	dir := apitest.ShortTempDir(t)
	missing := dir + "/none.sock"
	l, err := net.Listen("unix", dir+"/stale.sock")
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	for _, sock := range []string{missing, dir + "/stale.sock"} {
		_, err := api.NewClient(sock).Status(context.Background())
		if !errors.Is(err, api.ErrAgentNotRunning) || !strings.Contains(err.Error(), "sudo rekey start") || !strings.Contains(err.Error(), sock) {
			t.Fatalf("%s: err %v", sock, err)
		}
	}
}

// raw sends a request over the socket and returns the status and body.
func raw(t *testing.T, sock, method, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://rekey"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sentinel is the innermost error of a wrapped chain.
func sentinel(err error) error {
	for errors.Unwrap(err) != nil {
		err = errors.Unwrap(err)
	}
	return err
}
