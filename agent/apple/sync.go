package apple

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
)

// Device is one organisation device as Apple lists it.
type Device struct {
	ID            string          // Apple's orgDevices id (today the serial number)
	Serial        string          // serialNumber; the id when Apple omits it
	Model         string          // deviceModel, e.g. `iMac 21.5"`
	ProductFamily string          // productFamily: Mac, iPhone, iPad, AppleTV, Watch, Vision
	Status        string          // status: ASSIGNED, UNASSIGNED
	Attributes    json.RawMessage // every attribute as Apple sent it, unknown ones included
}

// Coverage is one AppleCare or warranty record of a device.
type Coverage struct {
	ID              string
	Description     string    // e.g. "Limited Warranty", "AppleCare+"
	Status          string    // ACTIVE or INACTIVE
	Start, End      time.Time // startDateTime, endDateTime; zero when absent or unparseable
	AgreementNumber string    // empty when Apple sends null
	PaymentType     string    // ABE_SUBSCRIPTION, PAID_UP_FRONT, SUBSCRIPTION, NONE
	Renewable       bool      // isRenewable
	Canceled        bool      // isCanceled
	Attributes      json.RawMessage
}

// DeviceCoverage is the complete coverage answer for one device. Zero
// Records means Apple lists no coverage for it; a device whose coverage
// could not be read is not given a DeviceCoverage at all.
type DeviceCoverage struct {
	DeviceID string
	Serial   string
	Records  []Coverage
}

// Sink receives a sync page by page. Page gets one page's devices, the
// coverage of those devices and the cursor to resume after it, so a sink
// can store all three in one transaction. Page with next == "" is the last
// page: the sync finished and the next one starts from the beginning.
type Sink interface {
	Page(ctx context.Context, devices []Device, coverage []DeviceCoverage, next string) error
}

// Progress is reported after every page the sink accepted.
type Progress struct {
	Pages      int      // pages done in this run
	Devices    int      // devices handed to the sink in this run
	Coverage   int      // coverage records handed to the sink in this run
	Skipped    int      // devices whose coverage could not be read, in this run
	SkippedIDs []string // the skipped device ids of the latest page
	Total      int      // meta.paging.total when Apple gives it, else 0
	Cursor     string   // where a new run would resume; "" when Done
	Done       bool
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
	DeviceModel   string `json:"deviceModel"`
	ProductFamily string `json:"productFamily"`
	Status        string `json:"status"`
}

type coverageAttrs struct {
	Description     string  `json:"description"`
	Status          string  `json:"status"`
	StartDateTime   string  `json:"startDateTime"`
	EndDateTime     string  `json:"endDateTime"`
	AgreementNumber *string `json:"agreementNumber"`
	PaymentType     string  `json:"paymentType"`
	IsRenewable     bool    `json:"isRenewable"`
	IsCanceled      bool    `json:"isCanceled"`
}

// Sync imports every organisation device and its coverage, starting at
// cursor ("" for the beginning). Each page goes to sink before the next is
// read, then its cursor, so a sync that stops (error, cancel, crash)
// resumes from the last page the sink accepted. Coverage is read with
// Concurrency requests in flight. A device whose coverage answer is a
// client error other than 401/403/429 (e.g. 404, the device left the
// organisation) is left out of the page's coverage and counted in
// Progress.Skipped; every other failure stops the sync with an error that
// wraps ErrRejected or ErrUnreachable where it is one of those.
func (c *Client) Sync(ctx context.Context, cred Credential, cursor string, sink Sink, progress func(Progress)) error {
	cred, err := resolve(cred)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	base := c.apiBase(cred.Scope)
	next := c.pageURL(base, cursor)
	p := Progress{Cursor: cursor}
	for next != "" {
		var page listAnswer
		if err := c.get(ctx, cred, next, "list devices", &page); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		devices, err := toDevices(page.Data)
		if err != nil {
			return fmt.Errorf("sync: list devices: %w", err)
		}
		covs, skipped, err := c.coverageFor(ctx, cred, base, devices)
		if err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		nextCursor, nextURL, err := c.nextPage(base, page)
		if err != nil {
			return fmt.Errorf("sync: list devices: %w", err)
		}
		if nextCursor != "" && nextCursor == p.Cursor {
			return fmt.Errorf("sync: list devices: %w: the API returned cursor %q twice", ErrUnreachable, nextCursor)
		}
		if err := sink.Page(ctx, devices, covs, nextCursor); err != nil {
			return fmt.Errorf("sync: store page: %w", err)
		}
		p.Pages++
		p.Devices += len(devices)
		for _, dc := range covs {
			p.Coverage += len(dc.Records)
		}
		p.Skipped += len(skipped)
		p.SkippedIDs = skipped
		p.Total = page.Meta.Paging.Total
		p.Cursor, p.Done = nextCursor, nextURL == ""
		if progress != nil {
			progress(p)
		}
		next = nextURL
	}
	return nil
}

func (c *Client) pageURL(base, cursor string) string {
	q := url.Values{"limit": {strconv.Itoa(orDefault(c.PageLimit, DefaultPageLimit))}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return base + "/v1/orgDevices?" + q.Encode()
}

// nextPage returns the cursor to record and the URL to read next ("" at the
// end). links.next is followed only on the API's own origin, so a bearer
// token is never sent elsewhere; without it the URL is built from the cursor.
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
	if cursor == "" {
		u, _ := url.Parse(next)
		cursor = u.Query().Get("cursor")
	}
	if cursor == "" {
		return "", "", fmt.Errorf("%w: malformed answer: links.next without a cursor", ErrUnreachable)
	}
	return cursor, next, nil
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
			ProductFamily: a.ProductFamily, Status: a.Status, Attributes: r.Attributes}
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
		Start: parseTime(a.StartDateTime), End: parseTime(a.EndDateTime)}
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

// coverageFor reads the coverage of devices with at most Concurrency
// requests in flight. It returns the answers in device order, the ids of
// skipped devices, or the first error that stops the page.
func (c *Client) coverageFor(ctx context.Context, cred Credential, base string, devices []Device) ([]DeviceCoverage, []string, error) {
	results := make([]DeviceCoverage, len(devices))
	failed := make([]bool, len(devices))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency())
	for i, d := range devices {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err // an earlier device stopped the page; ask no more
			}
			dc, err := c.deviceCoverage(gctx, cred, base, d)
			switch {
			case err == nil:
				results[i] = dc
			case skippable(err):
				failed[i] = true
			default:
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	out := make([]DeviceCoverage, 0, len(devices))
	var skipped []string
	for i := range devices {
		if failed[i] {
			skipped = append(skipped, devices[i].ID)
			continue
		}
		out = append(out, results[i])
	}
	return out, skipped, nil
}

// skippable says a coverage failure concerns only that device.
func skippable(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return false
	}
	return se.Status >= 400 && se.Status < 500
}

// deviceCoverage reads every page of one device's appleCareCoverage.
func (c *Client) deviceCoverage(ctx context.Context, cred Credential, base string, d Device) (DeviceCoverage, error) {
	dc := DeviceCoverage{DeviceID: d.ID, Serial: d.Serial, Records: []Coverage{}}
	next := base + "/v1/orgDevices/" + url.PathEscape(d.ID) + "/appleCareCoverage"
	for pages := 0; next != ""; pages++ {
		if pages > 100 {
			return dc, fmt.Errorf("read coverage of %s: %w: more than 100 pages", d.ID, ErrUnreachable)
		}
		var ans listAnswer
		if err := c.get(ctx, cred, next, "read coverage of "+d.ID, &ans); err != nil {
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
