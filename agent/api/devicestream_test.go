package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/agent/api/apitest"
	"github.com/rekeyd/rekey/store"
)

// streamer is a Backend whose device pages come in batches of batch
// devices; failAfter > 0 makes the read fail after that many batches.
type streamer struct {
	*apitest.Fake
	devs      []store.Device
	batch     int
	failAfter int
}

func (s streamer) StreamDevices(ctx context.Context, tenantID string, q store.DeviceQuery, emit func([]store.Device) error) (string, error) {
	if tenantID != "t1" {
		return "", fmt.Errorf("list devices: tenant %q: %w", tenantID, store.ErrNotFound)
	}
	for i, n := 0, 0; i < len(s.devs); i, n = i+s.batch, n+1 {
		if s.failAfter > 0 && n == s.failAfter {
			return "", errors.New("list devices: disk I/O error")
		}
		if err := emit(s.devs[i:min(i+s.batch, len(s.devs))]); err != nil {
			return "", err
		}
	}
	return "next-serial", nil
}

func pageOf(n int) []store.Device {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	devs := make([]store.Device, n)
	for i := range devs {
		serial := fmt.Sprintf("C%09d", i)
		// Attributes as the store keeps them: compact JSON, sent as they
		// are, and one in ten with a character json.Encoder escapes.
		attrs := fmt.Sprintf(`{"serialNumber":"%s","color":"SILVER","imei":[],"eid":null}`, serial)
		if i%10 == 0 {
			attrs = `{"note":"<b>&</b>"}`
		}
		devs[i] = store.Device{Serial: serial, AppleID: serial, Model: "MacBook Pro <14-inch> & more", Status: "ASSIGNED",
			Attrs: json.RawMessage(attrs), CoverageState: store.CoverageActive, UpdatedAt: t0, Coverage: []store.Coverage{{ID: "cov-" + serial,
				Serial: serial, Description: "AppleCare+", Status: "ACTIVE", EndDate: "2028-01-01T00:00:00Z",
				Attrs: json.RawMessage(`{"status":"ACTIVE","isRenewable":true}`)}}}
	}
	if n > 3 {
		devs[3].UpdatedAt = t0.In(time.FixedZone("CET", 3600)) // one device through json.Marshal
	}
	return devs
}

// rawPage sends GET path on a fresh connection and returns the answer
// with its body read whole (or the error reading it).
func rawPage(t *testing.T, sock, path string) (*http.Response, []byte, error) {
	return rawPageProto(t, sock, path, "HTTP/1.1")
}

// rawPageProto is rawPage in HTTP version proto.
func rawPageProto(t *testing.T, sock, path, proto string) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s %s\r\nHost: rekey\r\n\r\n", path, proto)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestDevicePageStreamedIsTheEncodersPage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		chunked bool
	}{{"empty", 0, false}, {"small", 20, false}, {"large", 1000, true}} {
		t.Run(tc.name, func(t *testing.T) {
			devs := pageOf(tc.n)
			sock, _ := apitest.Serve(t, api.Config{Backend: streamer{Fake: &apitest.Fake{}, devs: devs, batch: 100}})
			resp, body, err := rawPage(t, sock, "/v1/tenants/t1/devices?limit=1000")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s, %v", resp.Status, err)
			}
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(api.DevicePage{Devices: append([]store.Device{}, devs...), Next: "next-serial"}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want.Bytes()) {
				t.Fatalf("streamed page differs from json.Encoder's (%d bytes, want %d)", len(body), want.Len())
			}
			if chunked := resp.ContentLength < 0; chunked != tc.chunked {
				t.Fatalf("Content-Length %d: chunked %v, want %v", resp.ContentLength, chunked, tc.chunked)
			}
			// HTTP/1.0 (the Swift example's): never chunked, the same bytes.
			resp, body, err = rawPageProto(t, sock, "/v1/tenants/t1/devices?limit=1000", "HTTP/1.0")
			if err != nil || resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) > 0 || !bytes.Equal(body, want.Bytes()) {
				t.Fatalf("HTTP/1.0: %s, %v, transfer encoding %v, %d bytes (want %d)", resp.Status, err, resp.TransferEncoding, len(body), want.Len())
			}
		})
	}
}

func TestDevicePageErrorBeforeTheFirstBytesIsAnErrorAnswer(t *testing.T) {
	sock, _ := apitest.Serve(t, api.Config{Backend: streamer{Fake: &apitest.Fake{}, devs: pageOf(1000), batch: 100}})
	resp, body, err := rawPage(t, sock, "/v1/tenants/t9/devices")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown tenant: %s, %v; want 404", resp.Status, err)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" {
		t.Fatalf("unknown tenant: body %q is not an error answer (%v)", body, err)
	}
}

func TestDevicePageFailingMidwayBreaksTheAnswer(t *testing.T) {
	// 300 devices of about 300 bytes are sent before the read fails.
	sock, _ := apitest.Serve(t, api.Config{Backend: streamer{Fake: &apitest.Fake{}, devs: pageOf(1000), batch: 300, failAfter: 2}})
	resp, body, err := rawPage(t, sock, "/v1/tenants/t1/devices?limit=1000")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s; want the 200 already sent", resp.Status)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading a page cut short: %v (%d bytes); want unexpected EOF", err, len(body))
	}
	if json.Valid(body) {
		t.Fatal("a page cut short reads as valid JSON")
	}
	// HTTP/1.0: the close ends the body, which is then not valid JSON.
	resp, body, _ = rawPageProto(t, sock, "/v1/tenants/t1/devices?limit=1000", "HTTP/1.0")
	if resp.StatusCode != http.StatusOK || len(body) == 0 || json.Valid(body) {
		t.Fatalf("HTTP/1.0 page cut short: %s, %d bytes, valid JSON %v; want 200 and invalid JSON", resp.Status, len(body), json.Valid(body))
	}
	// The API client reports it too, never a short page.
	c := api.NewClient(sock)
	defer c.Close()
	if page, err := c.Devices(context.Background(), "t1", store.DeviceQuery{Limit: 1000}); err == nil {
		t.Fatalf("client read a broken page as %d devices", len(page.Devices))
	}
}
