package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rekeyd/rekey/store"
)

// stdPage is the page as json.Encoder encodes it.
func stdPage(t *testing.T, p DevicePage) (string, error) {
	t.Helper()
	var b bytes.Buffer
	err := json.NewEncoder(&b).Encode(p)
	return b.String(), err
}

// handPage encodes p with the hand encoder alone, reporting false when a
// device needs json.Marshal: the tests hold the hand encoder itself to
// json.Encoder, not the fallback.
func handPage(p DevicePage) ([]byte, bool) {
	b := []byte(pageHead)
	for i := range p.Devices {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = appendDevice(b, &p.Devices[i], false); !ok {
			return b, false
		}
	}
	return appendPageTail(b, p.Next), true
}

// nastyStrings holds what string escaping must get right.
var nastyStrings = []string{"", "C02XK1ABJG5H", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"tab\tnew\nline\rcr\bbs\fff\x00nul\x1funit\x7fdel", "é ü 漢字 🙂", "line\u2028para\u2029", "bad \xff\xfe utf8 \xc3",
	"\xed\xa0\x80 surrogate", "U+FFFD \ufffd itself"}

func randString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return nastyStrings[r.IntN(len(nastyStrings))]
	}
	b := make([]byte, r.IntN(24))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randTime(r *rand.Rand) time.Time {
	switch r.IntN(4) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(0, r.Int64N(1<<62)).UTC()
}

var rawAttrs = []json.RawMessage{nil, {}, json.RawMessage(`null`), json.RawMessage(` { "color" : "silver",
	"capacity": [ 512, "GB" ], "note": "<b>&</b>\u2028" } `), json.RawMessage(`{"nested":{"a":[true,false,1.5e3]}}`)}

// TestDevicePageMatchesEncoder holds the hand encoder to json.Encoder's
// bytes over random pages with every kind of string, time and attributes.
func TestDevicePageMatchesEncoder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 300 {
		var p DevicePage
		for range r.IntN(6) {
			d := store.Device{Serial: randString(r), AppleID: randString(r), Model: randString(r),
				ProductFamily: randString(r), Status: randString(r), Attrs: rawAttrs[r.IntN(len(rawAttrs))],
				CoverageState: randString(r), CoverageEnd: randTime(r), CoverageCheckedAt: randTime(r),
				ReleasedAt: randTime(r), UpdatedAt: randTime(r)}
			for range r.IntN(3) {
				d.Coverage = append(d.Coverage, store.Coverage{ID: randString(r), Serial: randString(r),
					Description: randString(r), Status: randString(r), PaymentType: randString(r),
					AgreementNumber: randString(r), IsRenewable: r.IntN(2) == 0, IsCanceled: r.IntN(2) == 0,
					ContractCancelDate: randString(r), StartDate: randString(r), EndDate: randString(r),
					Attrs: rawAttrs[r.IntN(len(rawAttrs))]})
			}
			p.Devices = append(p.Devices, d)
		}
		p.Devices = nonNil(p.Devices)
		if r.IntN(2) == 0 {
			p.Next = randString(r)
		}
		want, err := stdPage(t, p)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := handPage(p)
		if !ok || string(got) != want {
			t.Fatalf("round %d: hand encoder (ok %v):\n%s\njson.Encoder:\n%s", round, ok, got, want)
		}
	}
}

// TestDevicePageCoversEveryField fills every exported field of a device and
// a coverage record: a field added to either and not to the hand encoder
// fails here.
func TestDevicePageCoversEveryField(t *testing.T) {
	var d store.Device
	var c store.Coverage
	fill(t, reflect.ValueOf(&c).Elem())
	fill(t, reflect.ValueOf(&d).Elem())
	d.Coverage = []store.Coverage{c}
	p := DevicePage{Devices: []store.Device{d}, Next: "N"}
	want, err := stdPage(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := handPage(p); !ok || string(got) != want {
		t.Fatalf("hand encoder (ok %v):\n%s\njson.Encoder:\n%s", ok, got, want)
	}
}

// fill sets every exported field of the struct v to a non-zero value.
func fill(t *testing.T, v reflect.Value) {
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		switch {
		case sf.Type == reflect.TypeFor[time.Time]():
			f.Set(reflect.ValueOf(time.Date(2027, 3, 4, 5, 6, 7, 890, time.UTC)))
		case sf.Type == reflect.TypeFor[json.RawMessage]():
			f.Set(reflect.ValueOf(json.RawMessage(`{"k":"v"}`)))
		case f.Kind() == reflect.String:
			f.SetString(strings.ToLower(sf.Name))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Kind() == reflect.Int64 || f.Kind() == reflect.Int:
			f.SetInt(42)
		case f.Kind() == reflect.Slice:
			// Coverage, set by the caller.
		default:
			t.Fatalf("field %s of kind %s: teach fill and the hand encoder", sf.Name, f.Kind())
		}
	}
}

// TestDevicePageFallsBack checks what the hand encoder leaves to
// json.Encoder: a time outside UTC is encoded the same, invalid attributes
// fail the same.
func TestDevicePageFallsBack(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	p := DevicePage{Devices: []store.Device{{Serial: "A", UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, paris)}}}
	if _, ok := handPage(p); ok {
		t.Fatal("a time outside UTC taken by the hand encoder")
	}
	want, _ := stdPage(t, p)
	if got, err := encodeDevicePage(p); err != nil || string(got) != want {
		t.Fatalf("page with a CET time: %s, %v; want %s", got, err, want)
	}
	bad := DevicePage{Devices: []store.Device{{Serial: "A", Attrs: json.RawMessage(`{"unterminated`)}}}
	if _, err := stdPage(t, bad); err == nil {
		t.Fatal("json.Encoder took invalid attributes")
	}
	if _, err := encodeDevicePage(bad); err == nil {
		t.Fatal("invalid attributes encoded")
	}
}

// TestTrustedAttrsMatchEncoder holds the store's attributes, which are
// sent as they are unless they hold a character to escape, to
// json.Encoder's bytes: compact JSON with and without such characters.
func TestTrustedAttrsMatchEncoder(t *testing.T) {
	for _, attrs := range []string{
		`{"serialNumber":"C02","imei":[],"releasedFromOrgDateTime":null,"n":1.5e3}`,
		`{"note":"…ellipsis, not a line separator"}`, // E2 80 A6
		`{"note":"<b>&</b>"}`,
		`{"note":"line` + "\u2028" + `para` + "\u2029" + `"}`,
		`"just a string"`, `null`, `[]`,
	} {
		d := store.Device{Serial: "S", Attrs: json.RawMessage(attrs), UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Coverage: []store.Coverage{{ID: "c", Serial: "S", Attrs: json.RawMessage(attrs)}}}
		p := DevicePage{Devices: []store.Device{d}}
		want, err := stdPage(t, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := appendDevices([]byte(pageHead), p.Devices, 0, true)
		if got := string(appendPageTail(b, "")); err != nil || got != want {
			t.Fatalf("attrs %s: trusted encoding\n%s\n(%v), json.Encoder\n%s", attrs, got, err, want)
		}
	}
	if needsEscape([]byte("\xe2\x80")) || !needsEscape([]byte("x\xe2\x80\xa9")) {
		t.Fatal("needsEscape at the end of the input")
	}
}
