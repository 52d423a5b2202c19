package api

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/rekeyd/rekey/store"
)

// DeviceQueryOf reads the query parameters of GET /v1/tenants/{id}/devices:
// limit, after, coverage, end_before (YYYY-MM-DD), serial_prefix and
// released. A bad value is an ErrInvalid naming the parameter and the fix.
func DeviceQueryOf(v url.Values) (store.DeviceQuery, error) {
	q := store.DeviceQuery{After: v.Get("after"), Limit: DefaultPageSize, SerialPrefix: v.Get("serial_prefix")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return q, fmt.Errorf("%w: limit %q must be a number from 1 to %d", ErrInvalid, s, MaxPageSize)
		}
		q.Limit = n
	}
	switch c := v.Get("coverage"); c {
	case "", store.CoverageActive, store.CoverageExpired, store.CoverageNone, store.CoverageUnknown:
		q.Coverage = c
	default:
		return q, fmt.Errorf("%w: coverage %q must be active, expired, none or unknown", ErrInvalid, c)
	}
	if s := v.Get("end_before"); s != "" {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return q, fmt.Errorf("%w: end_before %q must be a date as YYYY-MM-DD", ErrInvalid, s)
		}
		q.EndBefore = d
	}
	switch r := v.Get("released"); r {
	case "", store.ReleasedInclude, store.ReleasedExclude, store.ReleasedOnly:
		q.Released = r
	default:
		return q, fmt.Errorf("%w: released %q must be include, exclude or only", ErrInvalid, r)
	}
	return q, nil
}

// DeviceQueryValues is the inverse of DeviceQueryOf, for clients; zero
// fields are left out (limit 0: the server's default).
func DeviceQueryValues(q store.DeviceQuery) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("after", q.After)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("coverage", q.Coverage)
	if !q.EndBefore.IsZero() {
		v.Set("end_before", q.EndBefore.UTC().Format(time.DateOnly))
	}
	set("serial_prefix", q.SerialPrefix)
	set("released", q.Released)
	return v
}
