package payload

import (
	"errors"
	"strings"
	"testing"

	"github.com/rekeyd/rekey/agent/payload/plisttest"
	"howett.net/plist"
)

func TestReferenceBombIsRefusedBeforeDecoding(t *testing.T) {
	bomb := plisttest.Bomb(7, 14) // 14^7 ≈ 105 million objects once decoded
	if len(bomb) > 200 {
		t.Fatalf("bomb is %d bytes; the attack needs only a couple hundred", len(bomb))
	}
	// The bomb is a valid plist: a small one of the same shape decodes.
	var small map[string]any
	if _, err := plist.Unmarshal(plisttest.Bomb(2, 3), &small); err != nil {
		t.Fatalf("the bomb's shape is not a plist: %v", err)
	}
	_, err := Parse(bomb)
	if !errors.Is(err, ErrInvalidDocument) || !errors.Is(err, ErrTooComplex) || !strings.Contains(err.Error(), "100000 objects") {
		t.Fatalf("Parse(%d-byte bomb) = %v; want ErrInvalidDocument and ErrTooComplex naming the limit", len(bomb), err)
	}
}

func TestBinaryPlistBounds(t *testing.T) {
	for name, tc := range map[string]struct {
		data    []byte
		refused bool
	}{
		"shared child just under the object limit": {plisttest.Bomb(4, 14), false}, // 14^4 = 38416
		"shared child over the object limit":       {plisttest.Bomb(5, 14), true},  // 537824
		"33 levels deep":                           {plisttest.Bomb(31, 1), false},
		"34 levels deep":                           {plisttest.Bomb(33, 1), true},
		"reference cycle":                          {plisttest.Cycle(), true},
	} {
		t.Run(name, func(t *testing.T) {
			err := checkBounds(tc.data)
			if tc.refused != errors.Is(err, ErrTooComplex) {
				t.Fatalf("checkBounds = %v; refused want %v", err, tc.refused)
			}
			if !tc.refused && err != nil {
				t.Fatalf("checkBounds = %v", err)
			}
		})
	}
}

// A length the decoder would trust overflows its arithmetic and crashes it
// (a runtime panic it re-raises): such a file is refused before decoding,
// as a payload and as a decrypted credential.
func TestOverlongBinaryObjectsAreRefusedBeforeDecoding(t *testing.T) {
	for name, data := range map[string][]byte{
		"data wrapping past the end":          plisttest.Overlong(0x4, ^uint64(0)-5),
		"ASCII string wrapping past the end":  plisttest.Overlong(0x5, ^uint64(0)-5),
		"UTF-16 string wrapping past the end": plisttest.Overlong(0x6, 1<<63+1),
		"UTF-16 string longer than the file":  plisttest.Overlong(0x6, 3),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(data); !errors.Is(err, ErrInvalidDocument) || !strings.Contains(err.Error(), "longer than the file") {
				t.Fatalf("Parse = %v; want ErrInvalidDocument saying the object is longer than the file", err)
			}
			if _, err := Decrypt(encryptRaw(t, data, testWF), []string{testPass}, testWF); !errors.Is(err, ErrBadCredential) {
				t.Fatalf("Decrypt = %v; want ErrBadCredential", err)
			}
		})
	}
	if err := checkBounds(plisttest.Overlong(0x5, 4)); err != nil {
		t.Fatalf("a string exactly as long as its content: %v", err)
	}
}

func TestXMLPlistBounds(t *testing.T) {
	many := func(n int) []byte {
		return []byte("<plist><dict><key>Credentials</key><array>" + strings.Repeat("<true/>", n) + "</array></dict></plist>")
	}
	deep := func(n int) []byte {
		return []byte("<plist>" + strings.Repeat("<array>", n) + strings.Repeat("</array>", n) + "</plist>")
	}
	if err := checkBounds(many(MaxObjects - 10)); err != nil {
		t.Fatalf("XML just under the limit: %v", err)
	}
	if _, err := Parse(many(MaxObjects)); !errors.Is(err, ErrTooComplex) || !errors.Is(err, ErrInvalidDocument) {
		t.Fatalf("XML over the object limit: %v", err)
	}
	if err := checkBounds(deep(MaxDepth + 1)); err != nil {
		t.Fatalf("XML %d levels deep: %v", MaxDepth+1, err)
	}
	if err := checkBounds(deep(MaxDepth + 2)); !errors.Is(err, ErrTooComplex) {
		t.Fatalf("XML %d levels deep: %v", MaxDepth+2, err)
	}
	// The decoder descends into a <plist> inside the wrapper like into an array.
	nested := func(n int) []byte {
		return []byte(strings.Repeat("<plist>", n) + "<dict/>" + strings.Repeat("</plist>", n))
	}
	if err := checkBounds(nested(MaxDepth + 1)); err != nil {
		t.Fatalf("XML with %d nested <plist> wrappers: %v", MaxDepth+1, err)
	}
	if _, err := Parse(nested(10_000)); !errors.Is(err, ErrTooComplex) {
		t.Fatalf("XML with 10000 nested <plist> wrappers: %v", err)
	}
	// A text plist's brackets count wherever they stand: a quote inside a
	// comment, or "//" inside base64 data, must not hide the nesting after it.
	for _, prefix := range []string{"", "/*'*/", "// \"\n", "(<[//]>,"} {
		text := []byte(prefix + strings.Repeat("(", 10_000) + strings.Repeat(")", 10_000))
		if _, err := Parse(text); !errors.Is(err, ErrTooComplex) {
			t.Fatalf("a deep text plist after %q: %v", prefix, err)
		}
	}
	if err := checkBounds([]byte(`{ClientID = "BUSINESSAPI.x"; KeyID = k; PrivateKey = "…";}`)); err != nil {
		t.Fatalf("a text credential plist: %v", err)
	}
}

func TestReferenceBombInsideTheCiphertextIsRefused(t *testing.T) {
	ct := encryptRaw(t, plisttest.Bomb(7, 14), testWF)
	c, err := Decrypt(ct, []string{testPass}, testWF)
	if !errors.Is(err, ErrBadCredential) || !strings.Contains(err.Error(), "100000 objects") {
		t.Fatalf("Decrypt(bomb) = %v, %v; want ErrBadCredential naming the limit", c, err)
	}
}

func FuzzCheckBounds(f *testing.F) {
	f.Add(plisttest.Bomb(3, 4))
	f.Add(plisttest.Cycle())
	f.Add(plisttest.Overlong(0x6, 2)) // a length field for the fuzzer to grow
	f.Add(marshal(f, map[string]any{"a": []any{"b", map[string]any{"c": 1}}}, plist.BinaryFormat))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkBounds(data) != nil {
			return
		}
		// What passes decodes to a bounded tree.
		var v any
		if _, err := plist.Unmarshal(data, &v); err != nil {
			return
		}
		if n := countObjects(v, 0); n > MaxObjects {
			t.Fatalf("%d objects passed the bound", n)
		}
	})
}

func countObjects(v any, depth int) int {
	n := 1
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			n += 1 + countObjects(c, depth+1)
		}
	case []any:
		for _, c := range x {
			n += countObjects(c, depth+1)
		}
	}
	return n
}
