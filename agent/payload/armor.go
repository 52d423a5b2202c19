package payload

import (
	"bytes"

	"filippo.io/age/armor"
)

// armorColumns is the width of every base64 line of age's ASCII armor but
// the last.
const armorColumns = 64

// rewrapFlattened restores armor that lost its line breaks on the way: a web
// form's one-line text field strips them or turns each into a space. t is the
// armor with surrounding whitespace trimmed. It returns the armor re-wrapped
// at 64 columns and true only when t is one line holding the header, the
// base64 body and the footer, and the body is either unbroken or split by
// single spaces into full 64-column lines with a last line of 1 to 64
// characters. Anything else — a body wrapped at another width, doubled
// spaces, tabs — is left for the armor reader to refuse.
func rewrapFlattened(t []byte) ([]byte, bool) {
	if bytes.ContainsAny(t, "\r\n") {
		return nil, false
	}
	rest, ok := bytes.CutPrefix(t, []byte(armor.Header))
	if !ok {
		return nil, false
	}
	body, ok := bytes.CutSuffix(rest, []byte(armor.Footer))
	if !ok {
		return nil, false
	}
	// The breaks after the header and before the footer became a space or
	// nothing; those inside the body became the separators.
	body = bytes.TrimPrefix(body, []byte(" "))
	body = bytes.TrimSuffix(body, []byte(" "))
	var lines [][]byte
	if bytes.Contains(body, []byte(" ")) {
		lines = bytes.Split(body, []byte(" "))
		for i, l := range lines {
			last := i == len(lines)-1
			if len(l) == 0 || len(l) > armorColumns || (!last && len(l) != armorColumns) {
				return nil, false
			}
		}
	} else {
		for len(body) > armorColumns {
			lines = append(lines, body[:armorColumns])
			body = body[armorColumns:]
		}
		if len(body) == 0 {
			return nil, false
		}
		lines = append(lines, body)
	}
	var out bytes.Buffer
	out.WriteString(armor.Header + "\n")
	for _, l := range lines {
		out.Write(l)
		out.WriteByte('\n')
	}
	out.WriteString(armor.Footer + "\n")
	return out.Bytes(), true
}
