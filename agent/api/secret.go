package api

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
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

// UnmarshalJSON decodes the JSON string into fresh bytes, escapes included
// (a PEM key arrives with \n in it), without an intermediate Go string that
// could not be wiped.
func (s *Secret) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*s = nil
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return errors.New("a secret must be a JSON string")
	}
	out, err := unescape(data[1 : len(data)-1])
	if err != nil {
		return err
	}
	*s = out
	return nil
}

// unescape decodes the inside of a JSON string into a buffer sized for it
// up front, so that no regrowth leaves an unwiped copy behind.
func unescape(in []byte) (Secret, error) {
	out := make(Secret, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c != '\\' {
			if c < 0x20 {
				out.Wipe()
				return nil, errors.New("a secret holds a raw control character; escape it")
			}
			out = append(out, c)
			continue
		}
		if i+1 >= len(in) {
			out.Wipe()
			return nil, errors.New("a secret ends in a lone backslash")
		}
		i++
		switch in[i] {
		case '"', '\\', '/':
			out = append(out, in[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n, ok := hexRune(in[i+1:])
			if !ok {
				out.Wipe()
				return nil, errors.New("a secret holds a bad \\u escape")
			}
			i += n
			out = utf8.AppendRune(out, r) // at most 4 bytes for the 6 or 12 read
		default:
			out.Wipe()
			return nil, errors.New("a secret holds an unknown escape")
		}
	}
	if !utf8.Valid(out) {
		out.Wipe()
		return nil, errors.New("a secret is not valid UTF-8")
	}
	return out, nil
}

// hexRune reads the XXXX of a \uXXXX escape (and a following low surrogate)
// and returns the rune and how many bytes of in it used.
func hexRune(in []byte) (rune, int, bool) {
	one := func(b []byte) (rune, bool) {
		if len(b) < 4 {
			return 0, false
		}
		var r rune
		for _, c := range b[:4] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	r, ok := one(in)
	if !ok {
		return 0, 0, false
	}
	if utf16.IsSurrogate(r) && len(in) >= 10 && in[4] == '\\' && in[5] == 'u' {
		if lo, ok := one(in[6:]); ok {
			if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
				return d, 10, true
			}
		}
	}
	return r, 4, true
}

// readSecretBody reads a request body that may hold a password or key into
// one buffer allocated up front, so no smaller copy is left behind by a
// growing buffer; the caller clears it. Bodies are capped at MaxBodyBytes by
// the server (http.MaxBytesReader), whose error is returned as is.
func readSecretBody(r io.Reader) ([]byte, error) {
	buf := make([]byte, MaxBodyBytes+1)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return buf[:n], nil
	case err != nil:
		clear(buf[:n])
		return nil, err
	}
	clear(buf)
	return nil, fmt.Errorf("%w: request body larger than %d bytes", ErrInvalid, MaxBodyBytes)
}
