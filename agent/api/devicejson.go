package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rekeyd/rekey/store"
)

// devicePageGuess is the encoded size of one device with a coverage record,
// rounded up: the page's buffer is allocated once.
const devicePageGuess = 640

// pageBuffers holds the buffers of answered pages for the next ones: a page
// of 1,000 devices is over half a megabyte, which would otherwise be garbage
// after every request. A buffer grown past maxPooledPage is left to the
// collector.
var pageBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledPage = 4 << 20

// A device page is encoded compact, on one line, exactly as json.Encoder
// would encode a DevicePage (devicejson_test.go holds it to that): a page
// holds up to MaxPageSize devices, read by programs; indenting it would
// triple its encoding time, and reflection costs as much again as appending
// the fields by hand. A device the hand encoder does not take (a time
// outside UTC or years 0–9999, attributes that are not valid JSON) goes
// through json.Marshal, which gives the same bytes or fails the same.
// The page is written in three parts, so that it can be sent while it is
// read: pageHead, then the devices (appendDevices), then pageTail.

const pageHead = `{"devices":[`

// appendDevices appends devs to a page that holds n devices already.
// trusted says their attributes come from the store, which keeps them
// valid, compact JSON (appendRaw).
func appendDevices(b []byte, devs []store.Device, n int, trusted bool) ([]byte, error) {
	for i := range devs {
		if n+i > 0 {
			b = append(b, ',')
		}
		mark := len(b)
		out, ok := appendDevice(b, &devs[i], trusted)
		if ok {
			b = out
			continue
		}
		m, err := json.Marshal(&devs[i])
		if err != nil {
			return b[:mark], fmt.Errorf("encode device %q: %w", devs[i].Serial, err)
		}
		b = append(out[:mark], m...)
	}
	return b, nil
}

// appendPageTail closes a page whose next cursor is next.
func appendPageTail(b []byte, next string) []byte {
	b = append(b, ']')
	if next != "" {
		b = appendString(append(b, `,"next":`...), next)
	}
	return append(b, "}\n"...)
}

// encodeDevicePage encodes a whole page.
func encodeDevicePage(p DevicePage) ([]byte, error) {
	b, err := appendDevices(append(make([]byte, 0, 64+len(p.Devices)*devicePageGuess), pageHead...), p.Devices, 0, false)
	if err != nil {
		return nil, err
	}
	return appendPageTail(b, p.Next), nil
}

func appendDevice(b []byte, d *store.Device, trusted bool) ([]byte, bool) {
	ok := true
	b = appendString(append(b, `{"serial":`...), d.Serial)
	b = appendOpt(b, `,"apple_id":`, d.AppleID)
	b = appendOpt(b, `,"model":`, d.Model)
	b = appendOpt(b, `,"product_family":`, d.ProductFamily)
	b = appendOpt(b, `,"status":`, d.Status)
	if len(d.Attrs) > 0 {
		if b, ok = appendRaw(append(b, `,"attrs":`...), d.Attrs, trusted); !ok {
			return b, false
		}
	}
	b = appendString(append(b, `,"coverage_state":`...), d.CoverageState)
	for _, t := range []struct {
		key string
		t   time.Time
	}{{`,"coverage_end":`, d.CoverageEnd}, {`,"coverage_checked_at":`, d.CoverageCheckedAt}, {`,"released_at":`, d.ReleasedAt}} {
		if !t.t.IsZero() {
			if b, ok = appendTime(append(b, t.key...), t.t); !ok {
				return b, false
			}
		}
	}
	if len(d.Coverage) > 0 {
		b = append(b, `,"coverage":[`...)
		for i := range d.Coverage {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendCoverage(b, &d.Coverage[i], trusted); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	if b, ok = appendTime(append(b, `,"updated_at":`...), d.UpdatedAt); !ok {
		return b, false
	}
	return append(b, '}'), true
}

func appendCoverage(b []byte, c *store.Coverage, trusted bool) ([]byte, bool) {
	b = appendString(append(b, `{"id":`...), c.ID)
	b = appendString(append(b, `,"serial":`...), c.Serial)
	b = appendOpt(b, `,"description":`, c.Description)
	b = appendOpt(b, `,"status":`, c.Status)
	b = appendOpt(b, `,"payment_type":`, c.PaymentType)
	b = appendOpt(b, `,"agreement_number":`, c.AgreementNumber)
	b = strconv.AppendBool(append(b, `,"is_renewable":`...), c.IsRenewable)
	b = strconv.AppendBool(append(b, `,"is_canceled":`...), c.IsCanceled)
	b = appendOpt(b, `,"contract_cancel_date":`, c.ContractCancelDate)
	b = appendOpt(b, `,"start_date":`, c.StartDate)
	b = appendOpt(b, `,"end_date":`, c.EndDate)
	if len(c.Attrs) > 0 {
		var ok bool
		if b, ok = appendRaw(append(b, `,"attrs":`...), c.Attrs, trusted); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendOpt appends key and s unless s is empty (omitempty).
func appendOpt(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

// appendTime appends t as time.Time.MarshalJSON does, for UTC times of
// years 0–9999.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if t.Location() != time.UTC || t.Year() < 0 || t.Year() > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendRaw appends raw JSON as json.Encoder does: compact, HTML-escaped.
// Trusted JSON, the store's attributes, is valid and compact already (the
// store compacts what it writes, and its schema checks it is JSON): unless
// it holds a character json.Encoder escapes, it is appended as it is, the
// bytes json.Encoder would write, without scanning it again (that scan was
// half the time of a page of devices with Apple's attributes).
func appendRaw(b []byte, raw json.RawMessage, trusted bool) ([]byte, bool) {
	if trusted && !needsEscape(raw) {
		return append(b, raw...), true
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return b, false
	}
	out := bytes.NewBuffer(b)
	json.HTMLEscape(out, c.Bytes())
	return out.Bytes(), true
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as json.Encoder quotes strings: HTML
// characters, control characters, U+2028 and U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(append(b, s[start:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(b, s[start:]...), '"')
}

// needsEscape reports whether raw holds a character json.Encoder escapes in
// the JSON it copies: <, > or &, or U+2028 or U+2029.
func needsEscape(raw []byte) bool {
	for i, c := range raw {
		switch c {
		case '<', '>', '&':
			return true
		case 0xE2: // U+2028 and U+2029 are E2 80 A8 and E2 80 A9
			if i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&0xFE == 0xA8 {
				return true
			}
		}
	}
	return false
}
