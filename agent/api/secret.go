package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Secret is a password held as bytes so that it can be wiped; on the wire it
// is a plain JSON string. It prints as "[redacted]".
type Secret []byte

// Wipe overwrites the secret with zeros.
func (s Secret) Wipe() { clear(s) }

// String never reveals the secret.
func (s Secret) String() string { return "[redacted]" }

// GoString never reveals the secret.
func (s Secret) GoString() string { return "api.Secret([redacted])" }

// MarshalJSON writes the secret as a JSON string. encoding/json copies the
// result into its own pooled buffer, which cannot be wiped; the client
// therefore builds the unlock body with AppendJSON instead.
func (s Secret) MarshalJSON() ([]byte, error) {
	if !utf8.Valid(s) {
		return nil, errors.New("password is not valid UTF-8")
	}
	return s.AppendJSON(nil), nil
}

// AppendJSON appends the secret as a JSON string to dst, with no copy in
// between that the caller could not wipe. The secret must be valid UTF-8.
func (s Secret) AppendJSON(dst []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// UnmarshalJSON copies the JSON string into fresh bytes. Strings without
// escapes (the usual case) are copied without an intermediate Go string.
func (s *Secret) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*s = nil
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return errors.New("password must be a JSON string")
	}
	inner := data[1 : len(data)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		*s = append(Secret(nil), inner...)
		return nil
	}
	var str string // escapes need decoding; this copy cannot be wiped
	if err := json.Unmarshal(data, &str); err != nil {
		return err
	}
	*s = Secret(str)
	return nil
}
