package payload

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"regexp"
)

// hashOrder is the order of entry keys in the canonical encoding.
var hashOrder = []string{KeyImportID, KeyIntent, KeyTargetCredential, KeyCredentialName, KeyEncryptedCredential}

// entryHash is the hex SHA-256 of the canonical encoding of entry m, with or
// without its ImportID. The encoding (docs/payloads.md) is the ASCII line
// "rekey-entry-v1\n", then for each key of hashOrder present in the entry:
// the key, a NUL, one type byte ('s' string, 'd' data, 'o' other), the value's
// length as a big-endian uint64 and the value's bytes (UTF-8 for strings, the
// raw bytes for data, Go's %v text for anything else). Values are taken as
// written: no defaults are filled in, no whitespace is trimmed.
func entryHash(m map[string]any, withID bool) string {
	h := sha256.New()
	h.Write([]byte("rekey-entry-v1\n"))
	var n [8]byte
	for _, k := range hashOrder {
		v, ok := m[k]
		if !ok || (k == KeyImportID && !withID) {
			continue
		}
		typ, b := byte('o'), []byte(nil)
		switch x := v.(type) {
		case string:
			typ, b = 's', []byte(x)
		case []byte:
			typ, b = 'd', x
		default:
			b = fmt.Appendf(nil, "%v", x)
		}
		h.Write([]byte(k))
		h.Write([]byte{0, typ})
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// EntryImportID returns the ImportID and content hash Parse gives an entry
// with these values (strings as written; "" = key absent). An entry without
// an ImportID gets its hash as ImportID.
func EntryImportID(importID, intent, target, name string, ciphertext any) (id, hash string) {
	m := map[string]any{KeyCredentialName: name, KeyEncryptedCredential: ciphertext}
	for k, v := range map[string]string{KeyImportID: importID, KeyIntent: intent, KeyTargetCredential: target} {
		if v != "" {
			m[k] = v
		}
	}
	hash = entryHash(m, true)
	if importID == "" {
		return hash, hash
	}
	return importID, hash
}

var pemKeyRe = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)

// findPlaintextKey walks the whole plist and refuses a PrivateKey key or a
// PEM private key block anywhere: in a string, in data, or as a dictionary key.
func findPlaintextKey(v any, depth int) error {
	if depth > MaxDepth {
		return docError("nested deeper than %d levels; fix: deliver the payload as documented", MaxDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k == KeyPrivateKey {
				return plaintextKeyError("a " + KeyPrivateKey + " key")
			}
			if pemKeyRe.MatchString(k) {
				return plaintextKeyError("a PEM private key as a dictionary key")
			}
			if err := findPlaintextKey(c, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, c := range x {
			if err := findPlaintextKey(c, depth+1); err != nil {
				return err
			}
		}
	case string:
		if pemKeyRe.MatchString(x) {
			return plaintextKeyError("a PEM private key")
		}
	case []byte:
		if pemKeyRe.Match(x) {
			return plaintextKeyError("a PEM private key")
		}
	}
	return nil
}

func plaintextKeyError(what string) error {
	return fmt.Errorf("%w: the file holds %s, and managed preferences are readable by every user; "+
		"fix: remove it from the profile, and seal the credential with 'rekey seal --key KEY.pem ...' "+
		"(or 'age -p') so that only EncryptedCredential carries it", ErrPlaintextKey, what)
}
