package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"unicode/utf8"

	"github.com/rekeyd/rekey/store"
)

// Client talks to the agent over its Unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	d := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// NotRunningError says that no agent answers on the socket, and how to start one.
type NotRunningError struct {
	Socket string
	Err    error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("the rekey agent is not running (nothing answers on %s); start it with 'sudo rekey start', or in the foreground with 'rekey run', or point --socket / REKEY_SOCKET at its socket", e.Socket)
}

// Unwrap makes errors.Is(err, ErrAgentNotRunning) true.
func (e *NotRunningError) Unwrap() []error { return []error{ErrAgentNotRunning, e.Err} }

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://rekey"+path, r)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if notRunning(err) {
			return nil, &NotRunningError{Socket: c.socket, Err: err}
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// notRunning recognises "no such file" and "connection refused" on dial.
func notRunning(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return false
	}
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// checkStatus turns a non-2xx answer into an *APIError.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var body ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if json.Unmarshal(data, &body) != nil || body.Error.Code == "" {
		return &APIError{Status: resp.StatusCode, Code: codeInternal, Message: fmt.Sprintf("agent answered %s", resp.Status)}
	}
	return &APIError{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
}

// Health answers GET /v1/health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var v Health
	return v, c.do(ctx, "GET", "/v1/health", nil, &v)
}

// Status answers GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var v Status
	return v, c.do(ctx, "GET", "/v1/status", nil, &v)
}

// Credentials answers GET /v1/credentials.
func (c *Client) Credentials(ctx context.Context) ([]store.Credential, error) {
	var v struct{ Credentials []store.Credential }
	return v.Credentials, c.do(ctx, "GET", "/v1/credentials", nil, &v)
}

// Tenants answers GET /v1/tenants.
func (c *Client) Tenants(ctx context.Context) ([]store.Tenant, error) {
	var v struct{ Tenants []store.Tenant }
	return v.Tenants, c.do(ctx, "GET", "/v1/tenants", nil, &v)
}

// Imports answers GET /v1/imports.
func (c *Client) Imports(ctx context.Context) ([]store.Import, error) {
	var v struct{ Imports []store.Import }
	return v.Imports, c.do(ctx, "GET", "/v1/imports", nil, &v)
}

// Import answers GET /v1/imports/{id}.
func (c *Client) Import(ctx context.Context, id string) (store.Import, error) {
	var v store.Import
	return v, c.do(ctx, "GET", "/v1/imports/"+url.PathEscape(id), nil, &v)
}

// Rotations answers GET /v1/rotations.
func (c *Client) Rotations(ctx context.Context) ([]store.Rotation, error) {
	var v struct{ Rotations []store.Rotation }
	return v.Rotations, c.do(ctx, "GET", "/v1/rotations", nil, &v)
}

// Devices answers GET /v1/tenants/{id}/devices with q's filters (limit 0:
// the server's default).
func (c *Client) Devices(ctx context.Context, tenantID string, q store.DeviceQuery) (DevicePage, error) {
	path := "/v1/tenants/" + url.PathEscape(tenantID) + "/devices"
	if v := DeviceQueryValues(q); len(v) > 0 {
		path += "?" + v.Encode()
	}
	var v DevicePage
	return v, c.do(ctx, "GET", path, nil, &v)
}

// Unlock sends POST /v1/imports/{id}/unlock. The body is built by hand so
// that the only copy of the password it makes is wiped after sending; the
// caller wipes req.Password.
func (c *Client) Unlock(ctx context.Context, id string, req UnlockRequest) (store.Import, error) {
	if !utf8.Valid(req.Password) {
		return store.Import{}, fmt.Errorf("%w: the password is not valid UTF-8", ErrInvalid)
	}
	rest, err := json.Marshal(struct {
		Intent string `json:"intent,omitempty"`
		Target string `json:"target,omitempty"`
	}{req.Intent, req.Target})
	if err != nil {
		return store.Import{}, fmt.Errorf("encode unlock request: %w", err)
	}
	body := make([]byte, 0, len(req.Password)*6+len(rest)+16) // room for every escape: no regrowth leaves an unwiped copy
	body = append(body, `{"password":`...)
	body = req.Password.AppendJSON(body)
	if len(rest) > 2 {
		body = append(body, ',')
		body = append(body, rest[1:len(rest)-1]...)
	}
	body = append(body, '}')
	defer clear(body)
	var v store.Import
	return v, c.do(ctx, "POST", "/v1/imports/"+url.PathEscape(id)+"/unlock", body, &v)
}

// Dismiss sends POST /v1/imports/{id}/dismiss.
func (c *Client) Dismiss(ctx context.Context, id string) (store.Import, error) {
	var v store.Import
	return v, c.do(ctx, "POST", "/v1/imports/"+url.PathEscape(id)+"/dismiss", nil, &v)
}

// Rollback sends POST /v1/tenants/{id}/rollback and returns the tenant after it.
func (c *Client) Rollback(ctx context.Context, tenantID string) (TenantStatus, error) {
	var v TenantStatus
	return v, c.do(ctx, "POST", "/v1/tenants/"+url.PathEscape(tenantID)+"/rollback", nil, &v)
}

// Sync sends POST /v1/tenants/{id}/sync; progress arrives as events.
func (c *Client) Sync(ctx context.Context, tenantID string) (SyncAnswer, error) {
	var v SyncAnswer
	return v, c.do(ctx, "POST", "/v1/tenants/"+url.PathEscape(tenantID)+"/sync", nil, &v)
}

// EventStream reads GET /v1/events one line at a time.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	line []byte
}

// Events opens the event stream; Close it when done.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	resp, err := c.send(ctx, "GET", "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	if err := checkStatus(resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &EventStream{body: resp.Body, sc: sc}, nil
}

// Next returns the next event. The stream's final error line (slow client
// dropped, agent stopping) comes back as an *APIError; the end of the stream
// as io.EOF.
func (s *EventStream) Next() (store.Event, error) {
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			return store.Event{}, fmt.Errorf("read events: %w", err)
		}
		return store.Event{}, io.EOF
	}
	s.line = s.sc.Bytes()
	var probe struct {
		Error *ErrorDetail `json:"error"`
	}
	if json.Unmarshal(s.line, &probe) == nil && probe.Error != nil {
		return store.Event{}, &APIError{Status: http.StatusOK, Code: probe.Error.Code, Message: probe.Error.Message}
	}
	var e store.Event
	if err := json.Unmarshal(s.line, &e); err != nil {
		return store.Event{}, fmt.Errorf("decode event line: %w", err)
	}
	return e, nil
}

// Line is the raw JSON line of the last Next, valid until the next call.
func (s *EventStream) Line() []byte { return s.line }

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
