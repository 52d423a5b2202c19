package apple

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Device is one organisation device as Apple lists it.
type Device struct {
	ID            string          // Apple's orgDevices id (today the serial number)
	Serial        string          // serialNumber; the id when Apple omits it
	Model         string          // deviceModel, e.g. `iMac 21.5"`
	ProductFamily string          // productFamily: Mac, iPhone, iPad, AppleTV, Watch, Vision
	Status        string          // status: ASSIGNED, UNASSIGNED
	ReleasedAt    time.Time       // releasedFromOrgDateTime; zero while in the organisation
	Attributes    json.RawMessage // every attribute as Apple sent it, unknown ones included
}

// Coverage is one AppleCare or warranty record of a device.
type Coverage struct {
	ID              string
	Description     string    // e.g. "Limited Warranty", "AppleCare+"
	Status          string    // ACTIVE or INACTIVE
	Start, End      time.Time // startDateTime, endDateTime; zero when absent (End: an open-ended subscription)
	CanceledAt      time.Time // contractCancelDateTime; zero when absent
	AgreementNumber string    // empty when Apple sends null
	PaymentType     string    // ABE_SUBSCRIPTION, PAID_UP_FRONT, SUBSCRIPTION, NONE
	Renewable       bool      // isRenewable
	Canceled        bool      // isCanceled
	Attributes      json.RawMessage
}

// DeviceCoverage is the result of reading one device's coverage: its
// complete list of records (empty: Apple lists none), or Failed with the
// reason when the read failed for that device alone (e.g. 404, the device
// left the organisation).
type DeviceCoverage struct {
	DeviceID string
	Serial   string
	Records  []Coverage
	Failed   bool
	Reason   string
}

// SyncState is where a sync pass stands, as the sink stored it.
type SyncState struct {
	Cursor string // where the device list resumes; "" from the first page
	Listed bool   // the pass has read the whole device list
}

// Sink stores a sync pass as it goes, each call in its own transaction.
type Sink interface {
	// Page stores one page of the device list and the cursor of the page
	// after it ("" after the last page).
	Page(ctx context.Context, devices []Device, next string) error
	// Due returns up to n devices whose coverage this pass has still to
	// read, most urgent first; none when every device was read.
	Due(ctx context.Context, n int) ([]Device, error)
	// Coverage stores a batch of coverage reads.
	Coverage(ctx context.Context, batch []DeviceCoverage) error
}

// Progress is reported after every page and coverage batch the sink stored.
type Progress struct {
	Pages     int     // device list pages stored in this run
	Devices   int     // devices listed in this run
	Checked   int     // coverage reads stored in this run
	Coverage  int     // coverage records stored in this run
	Failed    int     // coverage reads that failed for their device, in this run
	Total     int     // meta.paging.total when Apple gives it, else 0
	Listed    bool    // the whole device list has been read
	Cursor    string  // where the device list resumes; "" once listed
	Rate      float64 // the budget's rate, requests a minute
	Throttled int     // 429 answers the budget has seen
}

// wire shapes (JSON:API as Apple documents it); unknown fields are ignored.
type resource struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Attributes json.RawMessage `json:"attributes"`
}

type listAnswer struct {
	Data  []resource `json:"data"`
	Links struct {
		Next string `json:"next"`
	} `json:"links"`
	Meta struct {
		Paging struct {
			Total      int    `json:"total"`
			NextCursor string `json:"nextCursor"`
		} `json:"paging"`
	} `json:"meta"`
}

type deviceAttrs struct {
	SerialNumber  string `json:"serialNumber"`
	Released      string `json:"releasedFromOrgDateTime"`
	DeviceModel   string `json:"deviceModel"`
	ProductFamily string `json:"productFamily"`
	Status        string `json:"status"`
}

type coverageAttrs struct {
	Description     string  `json:"description"`
	Status          string  `json:"status"`
	StartDateTime   string  `json:"startDateTime"`
	EndDateTime     string  `json:"endDateTime"`
	CancelDateTime  string  `json:"contractCancelDateTime"`
	AgreementNumber *string `json:"agreementNumber"`
	PaymentType     string  `json:"paymentType"`
	IsRenewable     bool    `json:"isRenewable"`
	IsCanceled      bool    `json:"isCanceled"`
}

// ErrCursorRefused: Apple refused the device list cursor (400
// PARAMETER_ERROR.INVALID, e.g. it expired). Read the list again from the
// first page.
var ErrCursorRefused = errors.New("apple refused the device list cursor")

// Sync runs a sync pass from state, paying every request from the budget b:
// it reads the rest of the device list (always limit=1000) page by page into
// the sink, then the coverage of every device the sink says is due, with
// as many requests in flight as the budget allows, stored in batches of
// BatchSize reads or every BatchInterval. A sync that stops (error, cancel,
// crash, a Retry-After beyond MaxRetryAfter) resumes from what the sink
// stored. It returns ErrCursorRefused when Apple refuses a cursor, a
// PausedError (ErrPaused) when Apple asks for a longer wait, and otherwise
// errors that wrap ErrRejected or ErrUnreachable where they are one of
// those.
func (c *Client) Sync(ctx context.Context, cred Credential, b *Budget, state SyncState, sink Sink, progress func(Progress)) error {
	cred, err := resolve(cred)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if b == nil {
		b = NewBudget(0)
	}
	r := &run{c: c, cred: cred, b: b, base: c.apiBase(cred.Scope), sink: sink, report: progress}
	r.p.Cursor, r.p.Listed = state.Cursor, state.Listed
	if !state.Listed {
		if err := r.list(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	if err := r.coverage(ctx); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// run is one Sync call.
type run struct {
	c      *Client
	cred   Credential
	b      *Budget
	base   string
	sink   Sink
	report func(Progress)
	p      Progress
}

func (r *run) progress() {
	if r.report != nil {
		r.p.Rate, r.p.Throttled = r.b.Rate(), r.b.Throttled()
		r.report(r.p)
	}
}

// list reads the device list from the cursor to its end.
func (r *run) list(ctx context.Context) error {
	next := r.c.pageURL(r.base, r.p.Cursor)
	for next != "" {
		var page listAnswer
		if err := r.c.get(ctx, r.cred, r.b, next, "list devices", &page); err != nil {
			if refusedCursor(err) && strings.Contains(next, "cursor=") {
				return fmt.Errorf("%w: %w", ErrCursorRefused, err)
			}
			return err
		}
		devices, err := toDevices(page.Data)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		cursor, nextURL, err := r.c.nextPage(r.base, page)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		if cursor != "" && cursor == r.p.Cursor {
			return fmt.Errorf("list devices: %w: the API returned cursor %q twice", ErrUnreachable, cursor)
		}
		if err := r.sink.Page(ctx, devices, cursor); err != nil {
			return fmt.Errorf("store device page: %w", err)
		}
		r.p.Pages++
		r.p.Devices += len(devices)
		r.p.Total = page.Meta.Paging.Total
		r.p.Cursor, r.p.Listed = cursor, nextURL == ""
		r.progress()
		next = nextURL
	}
	return nil
}

// refusedCursor reports Apple's answer to a cursor it no longer accepts.
func refusedCursor(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusBadRequest && strings.HasPrefix(se.Code, "PARAMETER_ERROR")
}

func (c *Client) pageURL(base, cursor string) string {
	q := url.Values{"limit": {strconv.Itoa(DefaultPageLimit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return base + "/v1/orgDevices?" + q.Encode()
}

// nextPage returns the cursor to record and the URL to read next ("" at the
// end). links.next is followed only on the API's own origin, so a bearer
// token is never sent elsewhere, and with limit=1000 added when Apple left
// it out (its links carry only the cursor); without links.next the URL is
// built from meta.paging.nextCursor.
func (c *Client) nextPage(base string, page listAnswer) (cursor, next string, err error) {
	cursor = page.Meta.Paging.NextCursor
	if page.Links.Next == "" {
		if cursor == "" {
			return "", "", nil
		}
		return cursor, c.pageURL(base, cursor), nil
	}
	next, err = sameOrigin(base, page.Links.Next)
	if err != nil {
		return "", "", err
	}
	u, _ := url.Parse(next)
	q := u.Query()
	if cursor == "" {
		cursor = q.Get("cursor")
	}
	if cursor == "" {
		return "", "", fmt.Errorf("%w: malformed answer: links.next without a cursor", ErrUnreachable)
	}
	if q.Get("limit") == "" {
		q.Set("limit", strconv.Itoa(DefaultPageLimit))
		u.RawQuery = q.Encode()
	}
	return cursor, u.String(), nil
}

// sameOrigin resolves link against base and refuses another scheme or host.
func sameOrigin(base, link string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse APIBaseURL: %w", err)
	}
	u, err := b.Parse(link)
	if err != nil {
		return "", fmt.Errorf("%w: malformed answer: links.next: %v", ErrUnreachable, err)
	}
	if u.Scheme != b.Scheme || u.Host != b.Host {
		return "", fmt.Errorf("%w: links.next points to %s://%s, not the API at %s://%s: refusing to send the token there",
			ErrUnreachable, u.Scheme, u.Host, b.Scheme, b.Host)
	}
	return u.String(), nil
}

func toDevices(data []resource) ([]Device, error) {
	out := make([]Device, 0, len(data))
	for i, r := range data {
		if r.ID == "" {
			return nil, fmt.Errorf("%w: malformed answer: device %d has no id", ErrUnreachable, i)
		}
		var a deviceAttrs
		if len(r.Attributes) > 0 && string(r.Attributes) != "null" {
			if err := json.Unmarshal(r.Attributes, &a); err != nil {
				return nil, fmt.Errorf("%w: malformed answer: device %s attributes: %v", ErrUnreachable, r.ID, err)
			}
		}
		d := Device{ID: r.ID, Serial: a.SerialNumber, Model: a.DeviceModel,
			ProductFamily: a.ProductFamily, Status: a.Status, ReleasedAt: parseTime(a.Released), Attributes: r.Attributes}
		if d.Serial == "" {
			d.Serial = r.ID
		}
		out = append(out, d)
	}
	return out, nil
}

func toCoverage(r resource) (Coverage, error) {
	var a coverageAttrs
	if len(r.Attributes) > 0 && string(r.Attributes) != "null" {
		if err := json.Unmarshal(r.Attributes, &a); err != nil {
			return Coverage{}, fmt.Errorf("%w: malformed answer: coverage %s attributes: %v", ErrUnreachable, r.ID, err)
		}
	}
	cv := Coverage{ID: r.ID, Description: a.Description, Status: a.Status, PaymentType: a.PaymentType,
		Renewable: a.IsRenewable, Canceled: a.IsCanceled, Attributes: r.Attributes,
		Start: parseTime(a.StartDateTime), End: parseTime(a.EndDateTime), CanceledAt: parseTime(a.CancelDateTime)}
	if a.AgreementNumber != nil {
		cv.AgreementNumber = *a.AgreementNumber
	}
	return cv, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// deviceCoverage reads every page of one device's appleCareCoverage.
func (c *Client) deviceCoverage(ctx context.Context, cred Credential, b *Budget, base string, d Device) (DeviceCoverage, error) {
	dc := DeviceCoverage{DeviceID: d.ID, Serial: d.Serial, Records: []Coverage{}}
	next := base + "/v1/orgDevices/" + url.PathEscape(d.ID) + "/appleCareCoverage"
	for pages := 0; next != ""; pages++ {
		if pages > 100 {
			return dc, fmt.Errorf("read coverage of %s: %w: more than 100 pages", d.ID, ErrUnreachable)
		}
		var ans listAnswer
		if err := c.get(ctx, cred, b, next, "read coverage of "+d.ID, &ans); err != nil {
			return dc, err
		}
		for _, r := range ans.Data {
			cv, err := toCoverage(r)
			if err != nil {
				return dc, fmt.Errorf("read coverage of %s: %w", d.ID, err)
			}
			dc.Records = append(dc.Records, cv)
		}
		next = ""
		if ans.Links.Next != "" {
			var err error
			if next, err = sameOrigin(base, ans.Links.Next); err != nil {
				return dc, fmt.Errorf("read coverage of %s: %w", d.ID, err)
			}
		}
	}
	return dc, nil
}
