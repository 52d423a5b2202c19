package payload

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"filippo.io/age/armor"
)

// formMutations are what web forms and copy-paste do to armored text in a
// one-line field: line breaks removed, turned into spaces, or into CRLF.
var formMutations = map[string]func([]byte) []byte{
	"breaks stripped": func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), nil) },
	"breaks as spaces": func(b []byte) []byte {
		return bytes.TrimSpace(bytes.ReplaceAll(b, []byte("\n"), []byte(" ")))
	},
	"breaks as spaces, trailing space kept": func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte(" ")) },
	"breaks as CRLF":                        func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) },
	"stripped, surrounded by whitespace": func(b []byte) []byte {
		return append([]byte("  \t"), append(bytes.ReplaceAll(b, []byte("\n"), nil), "\n "...)...)
	},
}

func TestDecryptArmorPastedThroughForms(t *testing.T) {
	key := newKeyPEM(t)
	armored := sealed(t, key)
	if bytes.Count(armored, []byte("\n")) < 4 {
		t.Fatalf("sealed armor has too few lines to test re-wrapping:\n%s", armored)
	}
	for name, mutate := range formMutations {
		t.Run(name, func(t *testing.T) {
			pasted := mutate(bytes.Clone(armored))
			// The entry parses as a payload string first, as the agent reads it.
			ct, problem := ciphertextOf(string(pasted))
			if problem != "" {
				t.Fatalf("payload entry refused: %s", problem)
			}
			c, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Wipe()
			if c.ClientID != testClientID || c.KeyID != testKeyID {
				t.Fatalf("credential %+v", c)
			}
		})
	}
}

func TestFlattenedArmorRewrapsAtEveryLength(t *testing.T) {
	// Lengths around the 48-byte line boundary: a last line shorter than,
	// equal to and one past a full line.
	for _, n := range []int{1, 47, 48, 49, 95, 96, 97, 200} {
		data := make([]byte, n)
		rand.Read(data)
		var buf bytes.Buffer
		w := armor.NewWriter(&buf)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for name, mutate := range formMutations {
			got, err := dearmor(mutate(bytes.Clone(buf.Bytes())))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%d bytes, %s: err %v, round trip equal %v", n, name, err, bytes.Equal(got, data))
			}
		}
	}
}

func TestOtherArmorDamageStaysRefused(t *testing.T) {
	armored := sealed(t, newKeyPEM(t))
	flat := bytes.ReplaceAll(armored, []byte("\n"), []byte(" "))
	body := strings.Fields(string(armored))
	// body: header is 4 words, footer 4 words; the base64 lines are between.
	b64 := strings.Join(body[4:len(body)-4], "")
	rewrapped := func(width int, sep string) []byte {
		var lines []string
		for s := b64; s != ""; {
			n := min(width, len(s))
			lines = append(lines, s[:n])
			s = s[n:]
		}
		return []byte(armor.Header + sep + strings.Join(lines, sep) + sep + armor.Footer)
	}
	cases := map[string][]byte{
		"wrapped at 76, spaces":        rewrapped(76, " "),
		"wrapped at 76, newlines":      rewrapped(76, "\n"),
		"doubled spaces":               bytes.Replace(flat, []byte(" "), []byte("  "), 6),
		"tabs for breaks":              bytes.ReplaceAll(armored, []byte("\n"), []byte("\t")),
		"a character changed":          bytes.Replace(flat, []byte(" "), []byte(" !"), 5),
		"footer missing":               bytes.TrimSuffix(bytes.TrimSpace(flat), []byte(armor.Footer)),
		"body cut, breaks stripped":    append([]byte(armor.Header+b64[:100]), armor.Footer...),
		"empty body, breaks stripped":  []byte(armor.Header + armor.Footer),
		"line break kept in flattened": bytes.Replace(flat, []byte(" "), []byte("\n"), 1)[:len(flat)-40],
	}
	for name, ct := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := Decrypt(ct, []string{testPass}, DefaultWorkFactor)
			if c != nil || !errors.Is(err, ErrNotAge) {
				t.Fatalf("got %v, want ErrNotAge", err)
			}
		})
	}
}
