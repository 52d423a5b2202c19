package appletest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyd/rekey/agent/apple/appletest"
)

// manualClock moves only when told to.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func tokenFor(t *testing.T, srv *appletest.Server, now time.Time) string {
	t.Helper()
	k, err := srv.NewCredential("business.api")
	if err != nil {
		t.Fatal(err)
	}
	_, body := goodRequest(k, now).post(t, srv.TokenURL())
	tok, _ := body["access_token"].(string)
	if tok == "" {
		t.Fatalf("no token: %v", body)
	}
	return tok
}

type errorAnswer struct {
	Errors []struct{ ID, Status, Code string } `json:"errors"`
}

func TestRateLimitAnswers429WithRetryAfterOnTheServersClock(t *testing.T) {
	clk := &manualClock{t: time.Now()}
	srv := appletest.New()
	t.Cleanup(srv.Close)
	srv.SetClock(clk)
	srv.SetDevices(3)
	srv.SetRateLimit(2, 2) // two a minute, bursts of two
	tok := tokenFor(t, srv, clk.Now())
	url := srv.APIBaseURL() + "/v1/orgDevices/" + appletest.DeviceID(1) + "/appleCareCoverage"
	for i := range 2 {
		if status, b := get(t, url, tok); status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, status, b)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ea errorAnswer
	_ = json.NewDecoder(resp.Body).Decode(&ea)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("third request: %d Retry-After %q, want 429 and 30", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if len(ea.Errors) != 1 || ea.Errors[0].ID == "" || ea.Errors[0].Code != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("error body %+v: want Apple's ErrorResponse with an id", ea)
	}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err != nil || d.Sub(clk.Now()).Abs() > time.Second {
		t.Fatalf("Date %q, want the server's clock %v", resp.Header.Get("Date"), clk.Now())
	}
	clk.Add(30 * time.Second)
	if status, b := get(t, url, tok); status != http.StatusOK {
		t.Fatalf("after Retry-After: %d %s", status, b)
	}
	if st := srv.Stats(); st.Throttled != 1 || st.APIRequests != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeviceListLikeApple(t *testing.T) {
	srv := appletest.New()
	t.Cleanup(srv.Close)
	srv.SetDevices(250)
	tok := tokenFor(t, srv, time.Now())
	var p struct {
		Data  []struct{ ID string } `json:"data"`
		Links struct{ Next string } `json:"links"`
	}
	status, b := get(t, srv.APIBaseURL()+"/v1/orgDevices", tok)
	if status != http.StatusOK || json.Unmarshal(b, &p) != nil || len(p.Data) != 100 {
		t.Fatalf("default page: %d, %d devices", status, len(p.Data))
	}
	if strings.Contains(p.Links.Next, "limit=") || !strings.Contains(p.Links.Next, "cursor=") {
		t.Fatalf("links.next %q: want only the cursor", p.Links.Next)
	}
	first := p.Links.Next
	srv.Release(100, 101)
	p.Links.Next = ""
	if status, b = get(t, first+"&limit=1000", tok); status != http.StatusOK || json.Unmarshal(b, &p) != nil {
		t.Fatalf("second page: %d %s", status, b)
	}
	if len(p.Data) != 148 || p.Data[0].ID != appletest.DeviceID(102) || p.Links.Next != "" {
		t.Fatalf("after releasing two: %d devices from %s, next %q", len(p.Data), p.Data[0].ID, p.Links.Next)
	}
	if status, _ := get(t, srv.APIBaseURL()+"/v1/orgDevices/"+appletest.DeviceID(100)+"/appleCareCoverage", tok); status != http.StatusNotFound {
		t.Fatalf("coverage of a released device: %d, want 404", status)
	}
	srv.ExpireCursors()
	status, b = get(t, first, tok)
	var ea errorAnswer
	if status != http.StatusBadRequest || json.Unmarshal(b, &ea) != nil || ea.Errors[0].Code != "PARAMETER_ERROR.INVALID" {
		t.Fatalf("expired cursor: %d %s", status, b)
	}
}

func TestCoverageShapesLikeApple(t *testing.T) {
	srv := appletest.New()
	t.Cleanup(srv.Close)
	srv.SetDevices(16)
	tok := tokenFor(t, srv, time.Now())
	type rec struct {
		ID         string `json:"id"`
		Attributes struct {
			Status          string  `json:"status"`
			PaymentType     string  `json:"paymentType"`
			EndDateTime     *string `json:"endDateTime"`
			AgreementNumber *string `json:"agreementNumber"`
		} `json:"attributes"`
	}
	read := func(i int) []rec {
		var p struct{ Data []rec }
		status, b := get(t, srv.APIBaseURL()+"/v1/orgDevices/"+appletest.DeviceID(i)+"/appleCareCoverage", tok)
		if status != http.StatusOK || json.Unmarshal(b, &p) != nil {
			t.Fatalf("coverage of %d: %d %s", i, status, b)
		}
		if len(p.Data) != appletest.CoverageCount(i) {
			t.Fatalf("device %d: %d records, want %d", i, len(p.Data), appletest.CoverageCount(i))
		}
		return p.Data
	}
	one, five := read(1), read(5)
	if one[1].ID != five[1].ID || one[1].ID != *one[1].Attributes.AgreementNumber || one[0].Attributes.Status != "INACTIVE" {
		t.Fatalf("devices 1 and 5: %+v %+v; want a shared AppleCare+ id and an inactive warranty", one, five)
	}
	if sub := read(3)[0]; sub.Attributes.EndDateTime != nil || sub.Attributes.PaymentType != "ABE_SUBSCRIPTION" {
		t.Fatalf("subscription %+v: want a null endDateTime", sub)
	}
	if w := read(6)[0]; w.Attributes.Status != "INACTIVE" || appletest.CoverageState(6) != "expired" {
		t.Fatalf("device 6 %+v: want an inactive warranty", w)
	}
}
