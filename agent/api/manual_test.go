package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/platform"
	"github.com/rekeyd/rekey/store"
)

const testPEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBxq0R3WkK9vVb2\"quote\\back\n-----END EC PRIVATE KEY-----\n"

func TestManualRequestsCarryTheKeyAndTheServerWipesIt(t *testing.T) {
	var kept [][]byte
	f := sampleFake()
	f.RotateFunc = func(_ context.Context, tenantID string, req api.CredentialRequest) (api.RotationAnswer, error) {
		if tenantID != "t1" || string(req.PrivateKey) != testPEM || req.AuthCheck != api.AuthRequired || req.Name != "Prod 2" {
			t.Errorf("rotate got tenant %q, %+v", tenantID, req)
		}
		kept = append(kept, req.PrivateKey)
		return api.RotationAnswer{Rotation: store.Rotation{ID: "r2", Step: store.StepConfirmed}}, nil
	}
	f.AddFunc = func(_ context.Context, req api.CredentialRequest) (api.AddAnswer, error) {
		if string(req.PrivateKey) != testPEM || req.TokenURL != "http://127.0.0.1:9/t" || req.AuthCheck != api.AuthOff {
			t.Errorf("add got %+v", req)
		}
		kept = append(kept, req.PrivateKey)
		return api.AddAnswer{Tenant: store.Tenant{ID: "t2"}}, nil
	}
	c, _ := serveFake(t, f)
	ctx := context.Background()
	req := api.CredentialRequest{Name: "Prod 2", ClientID: "BUSINESSAPI.1", KeyID: "k2", PrivateKey: api.Secret(testPEM)}
	if ans, err := c.Rotate(ctx, "t1", req); err != nil || ans.Rotation.Step != store.StepConfirmed {
		t.Fatalf("rotate: %+v, %v", ans, err)
	}
	req.AuthCheck, req.TokenURL = api.AuthOff, "http://127.0.0.1:9/t"
	if ans, err := c.Add(ctx, req); err != nil || ans.Tenant.ID != "t2" {
		t.Fatalf("add: %+v, %v", ans, err)
	}
	if len(kept) != 2 {
		t.Fatalf("the backend saw %d requests, want 2", len(kept))
	}
	for i, k := range kept {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("request %d: the key is still in memory after the answer: %q", i, k)
		}
	}
}

func TestManualRequestsAreCheckedBeforeTheBackend(t *testing.T) {
	f := sampleFake()
	f.RotateFunc = func(context.Context, string, api.CredentialRequest) (api.RotationAnswer, error) {
		t.Error("the backend was called with a bad request")
		return api.RotationAnswer{}, nil
	}
	f.AddFunc = func(context.Context, api.CredentialRequest) (api.AddAnswer, error) {
		t.Error("the backend was called with a bad request")
		return api.AddAnswer{}, nil
	}
	_, sock := serveFake(t, f)
	secret := "MHcCAQEEIBxq0R3WkK9vVb2-SECRET"
	for _, tc := range []struct{ path, body, code string }{
		{"/v1/tenants/t1/rotate", `{"name":"a","private_key":"` + secret + `","auth_check":"sometimes"}`, "invalid_request"},
		{"/v1/tenants/t1/rotate", `{"name":"a","private_key":"` + secret + `","token_url":"https://x.test"}`, "invalid_request"},
		{"/v1/tenants/t1/rotate", `{"name":"a"}`, "invalid_request"},
		{"/v1/tenants", `{"private_key":"` + secret + `",`, "invalid_request"},
		{"/v1/tenants", `{"private_key":` + secret + `}`, "invalid_request"},
		{"/v1/tenants", `{"private_key":"` + strings.Repeat("A", api.MaxBodyBytes) + `"}`, "body_too_large"},
	} {
		status, body := raw(t, sock, "POST", tc.path, tc.body)
		if status < 400 || !strings.Contains(body, `"`+tc.code+`"`) || strings.Contains(body, secret) {
			t.Errorf("POST %s %.60s: %d %s; want %s without the key", tc.path, tc.body, status, body, tc.code)
		}
	}
}

func TestManualRoutesNeedAnAdmin(t *testing.T) {
	called := false
	f := &apitest.Fake{
		RotateFunc: func(context.Context, string, api.CredentialRequest) (api.RotationAnswer, error) {
			called = true
			return api.RotationAnswer{}, nil
		},
		CheckFunc: func(context.Context, string) (api.CheckAnswer, error) { called = true; return api.CheckAnswer{}, nil },
		RetryFunc: func(context.Context, string) (store.Import, error) { called = true; return store.Import{}, nil },
		AddFunc: func(context.Context, api.CredentialRequest) (api.AddAnswer, error) {
			called = true
			return api.AddAnswer{}, nil
		},
	}
	sock, _ := apitest.Serve(t, api.Config{Backend: f, Authorize: func(platform.Peer) bool { return false }})
	for _, p := range []string{"/v1/tenants", "/v1/tenants/t1/rotate", "/v1/credentials/c1/check", "/v1/imports/i1/retry"} {
		status, body := raw(t, sock, "POST", p, `{"name":"a","private_key":"k"}`)
		if status != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("POST %s by a non-admin: %d %s", p, status, body)
		}
	}
	if called {
		t.Fatal("a refused request reached the backend")
	}
}

func TestRetryAndCheckErrorsKeepTheirCodes(t *testing.T) {
	f := sampleFake()
	f.RetryFunc = func(context.Context, string) (store.Import, error) {
		return store.Import{}, errors.Join(api.ErrNotApplied, errors.New("the token endpoint rejected the new credential"))
	}
	f.CheckFunc = func(_ context.Context, id string) (api.CheckAnswer, error) {
		return api.CheckAnswer{CredentialID: id, Outcome: "rejected", Reason: "invalid_client"}, nil
	}
	c, _ := serveFake(t, f)
	if _, err := c.Retry(context.Background(), "i1"); !errors.Is(err, api.ErrNotApplied) || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("retry: %v, want not_applied with the reason", err)
	}
	if ans, err := c.Check(context.Background(), "c1"); err != nil || ans.Outcome != "rejected" || ans.CredentialID != "c1" {
		t.Fatalf("check: %+v, %v", ans, err)
	}
}
