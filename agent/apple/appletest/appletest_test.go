package appletest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/rekeyd/rekey/agent/apple/appletest"
)

const aud = "https://account.apple.com/auth/oauth2/v2/token"

// request is one hand-made token request, good unless a test edits it.
type request struct {
	header jwt.MapClaims
	claims jwt.MapClaims
	method jwt.SigningMethod
	key    any
	form   url.Values
	ctype  string
}

func goodRequest(k appletest.Key, now time.Time) *request {
	return &request{
		header: jwt.MapClaims{"kid": k.KeyID},
		claims: jwt.MapClaims{"iss": k.ClientID, "sub": k.ClientID, "aud": aud,
			"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": uuid.NewString()},
		method: jwt.SigningMethodES256,
		key:    k.Private,
		form: url.Values{"grant_type": {"client_credentials"}, "client_id": {k.ClientID},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "scope": {k.Scope}},
		ctype: "application/x-www-form-urlencoded",
	}
}

// post signs the assertion and sends the form; it returns the status and body.
func (r *request) post(t *testing.T, tokenURL string) (int, map[string]any) {
	t.Helper()
	tok := jwt.NewWithClaims(r.method, r.claims)
	for k, v := range r.header {
		tok.Header[k] = v
	}
	signed, err := tok.SignedString(r.key)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{}
	for k, v := range r.form {
		form[k] = v
	}
	form.Set("client_assertion", signed)
	resp, err := http.Post(tokenURL, r.ctype, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestTokenEndpointChecksEveryField(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name string
		edit func(*request)
		code string // "" = accepted
	}{
		{name: "good request gets a token", edit: func(*request) {}},
		{name: "signed by another key", edit: func(r *request) { r.key = other }, code: "invalid_client"},
		{name: "ES384", edit: func(r *request) { r.method, r.key = jwt.SigningMethodES384, p384 }, code: "invalid_client"},
		{name: "HS256", edit: func(r *request) { r.method, r.key = jwt.SigningMethodHS256, []byte("secret") }, code: "invalid_client"},
		{name: "wrong kid", edit: func(r *request) { r.header["kid"] = uuid.NewString() }, code: "invalid_client"},
		{name: "no kid", edit: func(r *request) { delete(r.header, "kid") }, code: "invalid_client"},
		{name: "wrong aud", edit: func(r *request) { r.claims["aud"] = "https://account.apple.com/auth/oauth2/token" }, code: "invalid_client"},
		{name: "two auds", edit: func(r *request) { r.claims["aud"] = []string{aud, "x"} }, code: "invalid_client"},
		{name: "iss is not the client", edit: func(r *request) { r.claims["iss"] = "BUSINESSAPI.other" }, code: "invalid_client"},
		{name: "sub is not the client", edit: func(r *request) { r.claims["sub"] = "BUSINESSAPI.other" }, code: "invalid_client"},
		{name: "expired", edit: func(r *request) {
			r.claims["iat"], r.claims["exp"] = now.Add(-time.Hour).Unix(), now.Add(-30*time.Minute).Unix()
		}, code: "invalid_client"},
		{name: "issued in the future", edit: func(r *request) { r.claims["iat"] = now.Add(time.Hour).Unix() }, code: "invalid_client"},
		{name: "no iat", edit: func(r *request) { delete(r.claims, "iat") }, code: "invalid_client"},
		{name: "no exp", edit: func(r *request) { delete(r.claims, "exp") }, code: "invalid_client"},
		{name: "longer than 180 days", edit: func(r *request) { r.claims["exp"] = now.Add(181 * 24 * time.Hour).Unix() }, code: "invalid_client"},
		{name: "no jti", edit: func(r *request) { delete(r.claims, "jti") }, code: "invalid_client"},
		{name: "wrong scope", edit: func(r *request) { r.form.Set("scope", "school.api") }, code: "invalid_scope"},
		{name: "wrong grant type", edit: func(r *request) { r.form.Set("grant_type", "password") }, code: "unsupported_grant_type"},
		{name: "wrong assertion type", edit: func(r *request) { r.form.Set("client_assertion_type", "jwt") }, code: "invalid_request"},
		{name: "client id differs from iss", edit: func(r *request) { r.form.Set("client_id", "BUSINESSAPI.other") }, code: "invalid_client"},
		{name: "JSON instead of a form", edit: func(r *request) { r.ctype = "application/json" }, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := appletest.New()
			t.Cleanup(srv.Close)
			k, err := srv.NewCredential("business.api")
			if err != nil {
				t.Fatal(err)
			}
			r := goodRequest(k, now)
			tt.edit(r)
			status, body := r.post(t, srv.TokenURL())
			if tt.code == "" {
				if status != http.StatusOK || body["access_token"] == "" || body["token_type"] != "Bearer" || body["expires_in"] != 3600.0 {
					t.Fatalf("status %d body %v; rejections %v", status, body, srv.Rejections())
				}
				return
			}
			if status != http.StatusBadRequest || body["error"] != tt.code {
				t.Fatalf("status %d body %v, want 400 %s", status, body, tt.code)
			}
		})
	}
}

func TestTokenEndpointRefusesReusedJTI(t *testing.T) {
	srv := appletest.New()
	t.Cleanup(srv.Close)
	k, err := srv.NewCredential("school.api")
	if err != nil {
		t.Fatal(err)
	}
	r := goodRequest(k, time.Now())
	if status, body := r.post(t, srv.TokenURL()); status != http.StatusOK {
		t.Fatalf("first use: %d %v", status, body)
	}
	if status, body := r.post(t, srv.TokenURL()); status != http.StatusBadRequest || body["error"] != "invalid_client" {
		t.Fatalf("reused jti: %d %v, want 400 invalid_client", status, body)
	}
}

func get(t *testing.T, rawURL, bearer string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestAPIRequiresAValidBearerToken(t *testing.T) {
	srv := appletest.New()
	t.Cleanup(srv.Close)
	now := time.Now()
	srv.SetClock(varClock{&now})
	srv.SetDevices(3)
	srv.SetTokenLifetime(time.Minute)
	k, err := srv.NewCredential("business.api")
	if err != nil {
		t.Fatal(err)
	}
	_, body := goodRequest(k, now).post(t, srv.TokenURL())
	tok, _ := body["access_token"].(string)
	list := srv.APIBaseURL() + "/v1/orgDevices"
	if status, b := get(t, list, tok); status != http.StatusOK {
		t.Fatalf("with token: %d %s", status, b)
	}
	if status, _ := get(t, list, ""); status != http.StatusUnauthorized {
		t.Errorf("without token: %d, want 401", status)
	}
	if status, _ := get(t, list, "not-a-token"); status != http.StatusUnauthorized {
		t.Errorf("unknown token: %d, want 401", status)
	}
	now = now.Add(2 * time.Minute)
	if status, _ := get(t, list, tok); status != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", status)
	}
}

func TestDevicePagesChainAndCoverageShapes(t *testing.T) {
	srv := appletest.New()
	t.Cleanup(srv.Close)
	srv.SetDevices(5)
	k, err := srv.NewCredential("business.api")
	if err != nil {
		t.Fatal(err)
	}
	_, body := goodRequest(k, time.Now()).post(t, srv.TokenURL())
	tok, _ := body["access_token"].(string)

	type page struct {
		Data []struct {
			ID         string         `json:"id"`
			Type       string         `json:"type"`
			Attributes map[string]any `json:"attributes"`
		} `json:"data"`
		Links struct{ Next string } `json:"links"`
		Meta  struct {
			Paging struct {
				Total      int    `json:"total"`
				NextCursor string `json:"nextCursor"`
			} `json:"paging"`
		} `json:"meta"`
	}
	var ids []string
	next := srv.APIBaseURL() + "/v1/orgDevices?limit=2"
	for next != "" {
		status, b := get(t, next, tok)
		var p page
		if status != http.StatusOK || json.Unmarshal(b, &p) != nil {
			t.Fatalf("%s: %d %s", next, status, b)
		}
		for _, d := range p.Data {
			if d.Type != "orgDevices" || d.Attributes["serialNumber"] != d.ID {
				t.Errorf("device %+v", d)
			}
			ids = append(ids, d.ID)
		}
		if p.Meta.Paging.Total != 5 || (p.Links.Next == "") != (p.Meta.Paging.NextCursor == "") ||
			(p.Links.Next != "" && !strings.Contains(p.Links.Next, "cursor="+p.Meta.Paging.NextCursor)) {
			t.Errorf("paging %+v links %+v disagree", p.Meta.Paging, p.Links)
		}
		next = p.Links.Next
	}
	if strings.Join(ids, ",") != strings.Join([]string{appletest.DeviceID(0), appletest.DeviceID(1),
		appletest.DeviceID(2), appletest.DeviceID(3), appletest.DeviceID(4)}, ",") {
		t.Errorf("ids over all pages = %v", ids)
	}

	for i, want := range []int{0, 2, 1} {
		status, b := get(t, srv.APIBaseURL()+"/v1/orgDevices/"+appletest.DeviceID(i)+"/appleCareCoverage", tok)
		var p page
		if status != http.StatusOK || json.Unmarshal(b, &p) != nil || len(p.Data) != want {
			t.Errorf("coverage of device %d: %d %s, want %d records", i, status, b, want)
		}
	}
	if status, _ := get(t, srv.APIBaseURL()+"/v1/orgDevices/NOPE/appleCareCoverage", tok); status != http.StatusNotFound {
		t.Errorf("coverage of unknown device: %d, want 404", status)
	}
	for _, q := range []string{"limit=0", "limit=1001", "cursor=%21%21"} {
		if status, _ := get(t, srv.APIBaseURL()+"/v1/orgDevices?"+q, tok); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, status)
		}
	}
}

func TestFaultsApplyTheGivenNumberOfTimes(t *testing.T) {
	srv := appletest.New()
	defer srv.Close()
	srv.Fail(appletest.Fault{Endpoint: appletest.CoverageEndpoint, Mode: appletest.RateLimited, Times: 2,
		RetryAfter: "3", DeviceID: appletest.DeviceID(1)})
	srv.SetDevices(2)
	k, err := srv.NewCredential("business.api")
	if err != nil {
		t.Fatal(err)
	}
	_, body := goodRequest(k, time.Now()).post(t, srv.TokenURL())
	tok, _ := body["access_token"].(string)
	cov := func(i int) int {
		status, _ := get(t, srv.APIBaseURL()+"/v1/orgDevices/"+appletest.DeviceID(i)+"/appleCareCoverage", tok)
		return status
	}
	got := []int{cov(0), cov(1), cov(1), cov(1)}
	if want := []int{200, 429, 429, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
}

// varClock says the time a variable of the test holds.
type varClock struct{ t *time.Time }

func (c varClock) Now() time.Time { return *c.t }
