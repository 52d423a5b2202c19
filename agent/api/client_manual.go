package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"unicode/utf8"

	"github.com/rekeyd/rekey/store"
)

// credentialBody builds a credential request body by hand so that the only
// copy of the key it makes is wiped by the caller; the caller wipes req.PrivateKey.
func credentialBody(req CredentialRequest) ([]byte, error) {
	if !utf8.Valid(req.PrivateKey) {
		return nil, fmt.Errorf("%w: the private key is not valid UTF-8 text; give the PEM file", ErrInvalid)
	}
	rest, err := json.Marshal(struct {
		Name       string `json:"name"`
		ClientID   string `json:"client_id"`
		KeyID      string `json:"key_id"`
		AuthCheck  string `json:"auth_check,omitempty"`
		TokenURL   string `json:"token_url,omitempty"`
		APIBaseURL string `json:"api_base_url,omitempty"`
	}{req.Name, req.ClientID, req.KeyID, req.AuthCheck, req.TokenURL, req.APIBaseURL})
	if err != nil {
		return nil, fmt.Errorf("encode credential request: %w", err)
	}
	body := make([]byte, 0, len(req.PrivateKey)*6+len(rest)+20) // room for every escape: no regrowth leaves an unwiped copy
	body = append(body, `{"private_key":`...)
	body = req.PrivateKey.AppendJSON(body)
	body = append(body, ',')
	body = append(body, rest[1:]...)
	return body, nil
}

// Rotate sends POST /v1/tenants/{id}/rotate. The caller wipes req.PrivateKey.
func (c *Client) Rotate(ctx context.Context, tenantID string, req CredentialRequest) (RotationAnswer, error) {
	var v RotationAnswer
	body, err := credentialBody(req)
	if err != nil {
		return v, err
	}
	defer clear(body)
	return v, c.do(ctx, "POST", "/v1/tenants/"+url.PathEscape(tenantID)+"/rotate", body, &v)
}

// Add sends POST /v1/tenants. The caller wipes req.PrivateKey.
func (c *Client) Add(ctx context.Context, req CredentialRequest) (AddAnswer, error) {
	var v AddAnswer
	body, err := credentialBody(req)
	if err != nil {
		return v, err
	}
	defer clear(body)
	return v, c.do(ctx, "POST", "/v1/tenants", body, &v)
}

// Check sends POST /v1/credentials/{id}/check.
func (c *Client) Check(ctx context.Context, credentialID string) (CheckAnswer, error) {
	var v CheckAnswer
	return v, c.do(ctx, "POST", "/v1/credentials/"+url.PathEscape(credentialID)+"/check", nil, &v)
}

// Retry sends POST /v1/imports/{id}/retry.
func (c *Client) Retry(ctx context.Context, id string) (store.Import, error) {
	var v store.Import
	return v, c.do(ctx, "POST", "/v1/imports/"+url.PathEscape(id)+"/retry", nil, &v)
}
