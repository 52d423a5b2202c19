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

// CoverageCount is how many coverage records device i has: every fourth
// device has none, every fourth has two (a warranty and AppleCare+), the
// rest one warranty.
func CoverageCount(i int) int {
	switch i % 4 {
	case 0:
		return 0
	case 1:
		return 2
	}
	return 1
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

func encodeCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(offset)))
}

func decodeCursor(c string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
	return n, err == nil && n >= 0 && strings.HasPrefix(string(b), "offset:")
}

// listDevices serves GET /v1/orgDevices?limit=&cursor=.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.DeviceRequests++
	total := s.devices
	s.mu.Unlock()
	if f := s.fault(DevicesEndpoint, ""); f != nil {
		answerFault(w, r, f, s.closing)
		return
	}
	if !s.authorized(w, r) {
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
		var ok bool
		if offset, ok = decodeCursor(c); !ok {
			apiError(w, http.StatusBadRequest, "PARAMETER_ERROR.INVALID", "cursor is not valid")
			return
		}
	}
	var ans listAnswer
	ans.Data = make([]resource, 0, limit)
	for i := offset; i < min(offset+limit, total); i++ {
		ans.Data = append(ans.Data, s.device(i))
	}
	ans.Links.Self = s.srv.URL + r.URL.RequestURI()
	ans.Meta.Paging = paging{Total: total, Limit: limit}
	if offset+limit < total {
		next := encodeCursor(offset + limit)
		ans.Meta.Paging.NextCursor = next
		ans.Links.Next = s.srv.URL + "/v1/orgDevices?" + url.Values{"cursor": {next}, "limit": {strconv.Itoa(limit)}}.Encode()
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
	EndDateTime            string  `json:"endDateTime"`
	Status                 string  `json:"status"`
	PaymentType            string  `json:"paymentType"`
}

// coverage serves GET /v1/orgDevices/{id}/appleCareCoverage.
func (s *Server) coverage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	s.stats.CoverageRequests++
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
	if !s.authorized(w, r) {
		return
	}
	n, err := strconv.Atoi(strings.TrimPrefix(id, idPrefix))
	if !strings.HasPrefix(id, idPrefix) || err != nil || n < 0 || n >= total {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "There is no resource of type 'orgDevices' with id '"+id+"'")
		return
	}
	var ans listAnswer
	ans.Data = make([]resource, 0, 2)
	start := time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC).Add(time.Duration(n%365) * 24 * time.Hour)
	for j := range CoverageCount(n) {
		a := coverageAttrs{
			StartDateTime: start.Format(time.RFC3339),
			EndDateTime:   start.AddDate(1+2*j, 0, 0).Format(time.RFC3339),
			Description:   "Limited Warranty", Status: "ACTIVE", PaymentType: "NONE",
		}
		if j == 1 {
			agreement := fmt.Sprintf("AGR%09d", n)
			a.Description, a.PaymentType, a.IsRenewable, a.AgreementNumber = "AppleCare+", "PAID_UP_FRONT", true, &agreement
		}
		ans.Data = append(ans.Data, resource{Type: "appleCareCoverage", ID: fmt.Sprintf("%s-C%d", id, j), Attributes: a})
	}
	ans.Links.Self = s.srv.URL + r.URL.RequestURI()
	ans.Meta.Paging = paging{Total: len(ans.Data), Limit: maxLimit}
	writeJSON(w, http.StatusOK, ans)
}
