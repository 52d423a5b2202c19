package appletest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	defaultLimit = 100
	maxLimit     = 1000
	idPrefix     = "SN"
)

// DeviceID is the id (and serial number) of generated device i, from 0.
func DeviceID(i int) string { return fmt.Sprintf("%s%010d", idPrefix, i) }

// CoverageCount is how many coverage records device i has, in the shapes
// Apple's documentation shows: every fourth device has none; every fourth
// an INACTIVE warranty that ended plus AppleCare+ whose id is its agreement
// number, shared by two devices (CoverageID); every fourth one Limited
// Warranty, ACTIVE for half of them and INACTIVE and ended for the others;
// every fourth an AppleCare for Business subscription (ABE_SUBSCRIPTION)
// with a null endDateTime.
func CoverageCount(i int) int {
	switch i % 4 {
	case 0:
		return 0
	case 1:
		return 2
	}
	return 1
}

// CoverageState is the coverage state rekey should derive for device i:
// none, active or expired.
func CoverageState(i int) string {
	switch {
	case i%4 == 0:
		return "none"
	case i%4 == 2 && (i/4)%2 == 1:
		return "expired"
	}
	return "active"
}

// CoverageID is the id of record j of device i. AppleCare+ records (device
// i%4 == 1, j == 1) carry the agreement number as id, the same for devices
// i and i+4 when i%8 == 1.
func CoverageID(i, j int) string {
	if i%4 == 1 && j == 1 {
		return fmt.Sprintf("AGR%09d", i/8)
	}
	return fmt.Sprintf("%s-C%d", DeviceID(i), j)
}

// CoverageTotal is the number of coverage records over the first n devices.
func CoverageTotal(n int) int {
	total := 0
	for i := range n {
		total += CoverageCount(i)
	}
	return total
}

// HasModel reports whether device i carries deviceModel; every tenth
// device omits it, as an optional attribute may be.
func HasModel(i int) bool { return i%10 != 9 }

var families = []string{"Mac", "iPhone", "iPad", "AppleTV", "Watch"}

type deviceAttrs struct {
	SerialNumber            string   `json:"serialNumber"`
	AddedToOrgDateTime      string   `json:"addedToOrgDateTime"`
	ReleasedFromOrgDateTime *string  `json:"releasedFromOrgDateTime"`
	UpdatedDateTime         string   `json:"updatedDateTime"`
	DeviceModel             string   `json:"deviceModel,omitempty"`
	ProductFamily           string   `json:"productFamily"`
	ProductType             string   `json:"productType"`
	DeviceCapacity          string   `json:"deviceCapacity"`
	PartNumber              string   `json:"partNumber"`
	OrderNumber             string   `json:"orderNumber"`
	Color                   string   `json:"color"`
	Status                  string   `json:"status"`
	OrderDateTime           string   `json:"orderDateTime"`
	IMEI                    []string `json:"imei"`
	MEID                    []string `json:"meid"`
	EID                     string   `json:"eid"`
	PurchaseSourceID        string   `json:"purchaseSourceId"`
	PurchaseSourceType      string   `json:"purchaseSourceType"`
}

type links struct {
	Self    string `json:"self"`
	Related string `json:"related,omitempty"`
	Next    string `json:"next,omitempty"`
}

type resource struct {
	Type          string         `json:"type"`
	ID            string         `json:"id"`
	Attributes    any            `json:"attributes"`
	Relationships map[string]any `json:"relationships,omitempty"`
	Links         links          `json:"links"`
}

type paging struct {
	Total      int    `json:"total"`
	Limit      int    `json:"limit"`
	NextCursor string `json:"nextCursor,omitempty"`
}

type listAnswer struct {
	Data  []resource `json:"data"`
	Links links      `json:"links"`
	Meta  struct {
		Paging paging `json:"paging"`
	} `json:"meta"`
}

func (s *Server) device(i int) resource {
	id := DeviceID(i)
	a := deviceAttrs{
		SerialNumber:       id,
		AddedToOrgDateTime: "2025-04-30T22:05:14.192Z",
		UpdatedDateTime:    "2025-05-01T15:33:54.164Z",
		ProductFamily:      families[i%len(families)],
		ProductType:        "Mac16,1",
		DeviceCapacity:     "512GB",
		PartNumber:         "FD311LL/A",
		OrderNumber:        strconv.Itoa(1000000 + i),
		Color:              "SILVER",
		Status:             []string{"ASSIGNED", "UNASSIGNED"}[i%2],
		OrderDateTime:      "2024-08-15T07:00:00Z",
		IMEI:               []string{},
		MEID:               []string{},
		PurchaseSourceID:   "1234567",
		PurchaseSourceType: "APPLE",
	}
	if HasModel(i) {
		a.DeviceModel = fmt.Sprintf("MacBook Pro (14-inch, %d)", 2020+i%5)
	}
	self := s.srv.URL + "/v1/orgDevices/" + id
	return resource{Type: "orgDevices", ID: id, Attributes: a, Links: links{Self: self},
		Relationships: map[string]any{
			"assignedServer": map[string]any{"links": links{Self: self + "/relationships/assignedServer"}},
		}}
}

func encodeCursor(gen, offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("g%d:offset:%d", gen, offset)))
}

// decodeCursor returns the generation and offset of a cursor.
func decodeCursor(c string) (gen, offset int, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, false
	}
	g, rest, ok1 := strings.Cut(string(b), ":offset:")
	gen, err1 := strconv.Atoi(strings.TrimPrefix(g, "g"))
	offset, err2 := strconv.Atoi(rest)
	return gen, offset, ok1 && strings.HasPrefix(g, "g") && err1 == nil && err2 == nil && offset >= 0
}

// ExpireCursors makes every cursor handed out so far invalid, as Apple's
// expire: a request with one is answered 400 PARAMETER_ERROR.INVALID.
func (s *Server) ExpireCursors() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursorGen++
}

// Release takes devices (by index) out of the organisation: the device list
// no longer returns them and their coverage is 404, as for a device
// released from Apple Business Manager. Restore brings them back.
func (s *Server) Release(indexes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range indexes {
		s.released[i] = true
	}
}

// Restore puts released devices back into the organisation.
func (s *Server) Restore(indexes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range indexes {
		delete(s.released, i)
	}
}

// listDevices serves GET /v1/orgDevices?limit=&cursor=. Without limit a
// page holds 100 devices; links.next carries only the cursor, as Apple's
// does, so a client that follows it as given drops to pages of 100.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.DeviceRequests++
	total, gen := s.devices, s.cursorGen
	s.mu.Unlock()
	if f := s.fault(DevicesEndpoint, ""); f != nil {
		answerFault(w, r, f, s.closing)
		return
	}
	if !s.authorized(w, r) || s.limited(w) {
		return
	}
	q := r.URL.Query()
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			apiError(w, http.StatusBadRequest, "PARAMETER_ERROR.INVALID", "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	offset := 0
	if c := q.Get("cursor"); c != "" {
		g, off, ok := decodeCursor(c)
		if !ok || g != gen {
			s.mu.Lock()
			s.stats.CursorsRefused++
			s.mu.Unlock()
			apiError(w, http.StatusBadRequest, "PARAMETER_ERROR.INVALID", "The parameter 'cursor' is invalid or has expired.")
			return
		}
		offset = off
	}
	var ans listAnswer
	ans.Data = make([]resource, 0, limit)
	s.mu.Lock()
	end := min(offset+limit, total)
	for i := offset; i < end; i++ {
		if !s.released[i] {
			ans.Data = append(ans.Data, s.device(i))
		}
	}
	ans.Meta.Paging = paging{Total: total - len(s.released), Limit: limit}
	s.mu.Unlock()
	ans.Links.Self = s.srv.URL + r.URL.RequestURI()
	if end < total {
		next := encodeCursor(gen, end)
		ans.Meta.Paging.NextCursor = next
		ans.Links.Next = s.srv.URL + "/v1/orgDevices?" + url.Values{"cursor": {next}}.Encode()
	}
	writeJSON(w, http.StatusOK, ans)
}

type coverageAttrs struct {
	ContractCancelDateTime *string `json:"contractCancelDateTime"`
	StartDateTime          string  `json:"startDateTime"`
	IsRenewable            bool    `json:"isRenewable"`
	IsCanceled             bool    `json:"isCanceled"`
	Description            string  `json:"description"`
	AgreementNumber        *string `json:"agreementNumber"`
	EndDateTime            *string `json:"endDateTime"`
	Status                 string  `json:"status"`
	PaymentType            string  `json:"paymentType"`
}

// coverage serves GET /v1/orgDevices/{id}/appleCareCoverage.
func (s *Server) coverage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	s.stats.CoverageRequests++
	s.coverageLog = append(s.coverageLog, id)
	s.inFlight++
	s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inFlight)
	total := s.devices
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if f := s.fault(CoverageEndpoint, id); f != nil {
		answerFault(w, r, f, s.closing)
		return
	}
	if !s.authorized(w, r) || s.limited(w) {
		return
	}
	n, err := strconv.Atoi(strings.TrimPrefix(id, idPrefix))
	s.mu.Lock()
	gone := s.released[n]
	s.mu.Unlock()
	if !strings.HasPrefix(id, idPrefix) || err != nil || n < 0 || n >= total || gone {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "There is no resource of type 'orgDevices' with id '"+id+"'")
		return
	}
	var ans listAnswer
	ans.Data = make([]resource, 0, 2)
	for j := range CoverageCount(n) {
		ans.Data = append(ans.Data, resource{Type: "appleCareCoverage", ID: CoverageID(n, j), Attributes: coverageRecord(n, j)})
	}
	ans.Links.Self = s.srv.URL + r.URL.RequestURI()
	ans.Meta.Paging = paging{Total: len(ans.Data), Limit: maxLimit}
	writeJSON(w, http.StatusOK, ans)
}

// coverageRecord is record j of device i (see CoverageCount).
func coverageRecord(i, j int) coverageAttrs {
	day := time.Duration(i%365) * 24 * time.Hour
	at := func(y int, m time.Month) string {
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).Add(day).Format(time.RFC3339)
	}
	str := func(s string) *string { return &s }
	switch {
	case i%4 == 1 && j == 0:
		return coverageAttrs{Description: "Limited Warranty", Status: "INACTIVE", PaymentType: "NONE",
			StartDateTime: at(2022, 1), EndDateTime: str(at(2023, 1))}
	case i%4 == 1:
		return coverageAttrs{Description: "AppleCare+", Status: "ACTIVE", PaymentType: "PAID_UP_FRONT",
			IsRenewable: true, AgreementNumber: str(CoverageID(i, 1)), StartDateTime: at(2025, 1), EndDateTime: str(at(2030, 1))}
	case i%4 == 3:
		return coverageAttrs{Description: "AppleCare for Business", Status: "ACTIVE", PaymentType: "ABE_SUBSCRIPTION",
			IsRenewable: true, StartDateTime: at(2025, 6)}
	case (i/4)%2 == 1:
		return coverageAttrs{Description: "Limited Warranty", Status: "INACTIVE", PaymentType: "NONE",
			StartDateTime: at(2023, 1), EndDateTime: str(at(2024, 1))}
	}
	return coverageAttrs{Description: "Limited Warranty", Status: "ACTIVE", PaymentType: "NONE",
		StartDateTime: at(2026, 1), EndDateTime: str(at(2029, 1))}
}
