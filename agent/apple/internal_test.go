package apple

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestResolveCredential(t *testing.T) {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := Credential{ClientID: "SCHOOLAPI.8b1e", KeyID: "k", Key: p256}
	tests := []struct {
		name      string
		edit      func(*Credential)
		wantScope string
		problem   string // in the error; "" = valid
	}{
		{name: "scope from SCHOOLAPI prefix", edit: func(*Credential) {}, wantScope: ScopeSchool},
		{name: "scope from BUSINESSAPI prefix", edit: func(c *Credential) { c.ClientID = "BUSINESSAPI.x" }, wantScope: ScopeBusiness},
		{name: "explicit scope for an unprefixed id", edit: func(c *Credential) { c.ClientID, c.Scope = "custom", ScopeBusiness }, wantScope: ScopeBusiness},
		{name: "empty client id", edit: func(c *Credential) { c.ClientID = "" }, problem: "Client ID is empty"},
		{name: "empty key id", edit: func(c *Credential) { c.KeyID = "" }, problem: "Key ID is empty"},
		{name: "no key", edit: func(c *Credential) { c.Key = nil }, problem: "private key is missing"},
		{name: "P-384 key", edit: func(c *Credential) { c.Key = p384 }, problem: "P-256"},
		{name: "unknown scope", edit: func(c *Credential) { c.Scope = "admin.api" }, problem: "unknown"},
		{name: "scope contradicts prefix", edit: func(c *Credential) { c.Scope = ScopeBusiness }, problem: "does not match"},
		{name: "no scope and no prefix", edit: func(c *Credential) { c.ClientID = "custom" }, problem: "set Scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			got, err := resolve(c)
			if tt.problem == "" {
				if err != nil || got.Scope != tt.wantScope {
					t.Fatalf("resolve = %+v, %v; want scope %s", got, err, tt.wantScope)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCredential) || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("resolve error %v, want ErrInvalidCredential naming %q", err, tt.problem)
			}
		})
	}
}

func TestNextPageStaysOnTheAPIOrigin(t *testing.T) {
	c := &Client{}
	base := "https://api-business.apple.com"
	page := func(next, cursor string) listAnswer {
		var p listAnswer
		p.Links.Next, p.Meta.Paging.NextCursor = next, cursor
		return p
	}
	tests := []struct {
		name         string
		page         listAnswer
		cursor, next string
		err          string
	}{
		{name: "last page", page: page("", "")},
		{name: "both given", page: page(base+"/v1/orgDevices?cursor=abc&limit=1000", "abc"),
			cursor: "abc", next: base + "/v1/orgDevices?cursor=abc&limit=1000"},
		{name: "link with only the cursor gets the limit", page: page("/v1/orgDevices?cursor=abc", ""),
			cursor: "abc", next: base + "/v1/orgDevices?cursor=abc&limit=1000"},
		{name: "cursor only", page: page("", "abc"), cursor: "abc", next: base + "/v1/orgDevices?cursor=abc&limit=1000"},
		{name: "link to another host", page: page("https://evil.example/v1/orgDevices?cursor=abc", "abc"), err: "refusing"},
		{name: "link downgraded to http", page: page("http://api-business.apple.com/v1/orgDevices?cursor=abc", "abc"), err: "refusing"},
		{name: "link without cursor", page: page(base+"/v1/orgDevices?page=2", ""), err: "without a cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cursor, next, err := c.nextPage(base, tt.page)
			if tt.err != "" {
				if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("nextPage error %v, want one naming %q", err, tt.err)
				}
				return
			}
			if err != nil || cursor != tt.cursor || next != tt.next {
				t.Fatalf("nextPage = %q, %q, %v; want %q, %q", cursor, next, err, tt.cursor, tt.next)
			}
		})
	}
}

func TestTokenStatusClassification(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   error
	}{
		{400, `{"error":"invalid_client"}`, ErrRejected},
		{400, `{"error":"invalid_grant","error_description":"expired"}`, ErrRejected},
		{401, `{"error":"unauthorized_client"}`, ErrRejected},
		{400, `{"error":"invalid_scope"}`, ErrRejected},
		{401, ``, ErrRejected},
		{400, `<html>bad gateway config</html>`, ErrUnreachable},
		{400, `{"error":"temporarily_unavailable"}`, ErrUnreachable},
		{403, `{"error":"invalid_client"}`, ErrUnreachable},
		{404, `not found`, ErrUnreachable},
		{429, ``, ErrUnreachable},
		{500, `{"error":"server_error"}`, ErrUnreachable},
		{503, ``, ErrUnreachable},
	}
	for _, tt := range tests {
		err := tokenStatusError(tt.status, []byte(tt.body))
		if !errors.Is(err, tt.want) {
			t.Errorf("%d %s: %v, want %v", tt.status, tt.body, err, tt.want)
		}
	}
}
