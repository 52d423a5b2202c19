package payload

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
	"howett.net/plist"
)

const (
	ageMagic    = "age-encryption.org/"
	ageV1       = "age-encryption.org/v1"
	armorHeader = armor.Header
)

// Credential is a decrypted Apple API credential. Call Wipe when done.
type Credential struct {
	Name     string // CredentialName inside the sealed plist; may be empty
	ClientID string
	KeyID    string
	Scope    string            // business.api or school.api, from the Client ID
	Key      *ecdsa.PrivateKey // EC P-256
	PEM      []byte            // Key as normalised PKCS#8 PEM

	plain []byte // the decrypted plist
}

// Wipe zeroes the PEM and the decrypted plaintext and drops the key. Strings
// and the big.Int inside the key are beyond what Go lets us wipe.
func (c *Credential) Wipe() {
	if c == nil {
		return
	}
	clear(c.PEM)
	clear(c.plain)
	c.PEM, c.plain, c.Key = nil, nil, nil
}

// Decrypt opens an age file (binary or ASCII-armored) encrypted to a
// passphrase and validates the credential inside. The scrypt work factor is
// read from the header and checked against maxWorkFactor before any key
// derivation. Passphrases are tried in order. Errors wrap ErrNotAge,
// ErrNotPassphrase, ErrWorkFactor, ErrWrongPassphrase or ErrBadCredential (and
// a key sentinel), and never hold a passphrase, the ciphertext or key bytes.
func Decrypt(ciphertext []byte, passphrases []string, maxWorkFactor int) (*Credential, error) {
	if maxWorkFactor < 1 || maxWorkFactor > MaxWorkFactorLimit {
		return nil, fmt.Errorf("decrypt credential: maximum work factor %d is outside 1..%d", maxWorkFactor, MaxWorkFactorLimit)
	}
	bin, err := dearmor(ciphertext)
	if err != nil {
		return nil, err
	}
	logN, err := ScryptWorkFactor(bin)
	if err != nil {
		return nil, err
	}
	if logN > maxWorkFactor {
		return nil, fmt.Errorf("%w: the credential was sealed with work factor %d and this agent accepts at most %d; "+
			"fix: seal it again with a lower factor ('rekey seal --work-factor %d') or raise --max-work-factor (at most %d)",
			ErrWorkFactor, logN, maxWorkFactor, maxWorkFactor, MaxWorkFactorLimit)
	}
	if len(passphrases) == 0 {
		return nil, fmt.Errorf("%w: no passphrase is configured; fix: add it to the passphrase file or unlock the import from a UI", ErrWrongPassphrase)
	}
	ids := make([]age.Identity, 0, len(passphrases))
	for _, p := range passphrases {
		id, err := age.NewScryptIdentity(p)
		if err != nil {
			continue // an empty passphrase cannot fit anything
		}
		id.SetMaxWorkFactor(maxWorkFactor)
		ids = append(ids, id)
	}
	plain, err := open(bin, ids)
	if err != nil {
		return nil, err
	}
	c, err := parseCredential(plain)
	if err != nil {
		clear(plain)
		return nil, err
	}
	return c, nil
}

// open runs age over the binary file and reads at most MaxFileSize bytes.
func open(bin []byte, ids []age.Identity) ([]byte, error) {
	var noMatch *age.NoIdentityMatchError
	r, err := age.Decrypt(bytes.NewReader(bin), ids...)
	if errors.As(err, &noMatch) || (err != nil && len(ids) == 0) {
		return nil, fmt.Errorf("%w: tried %d passphrase(s); fix: add the right passphrase to the passphrase file or unlock the import from a UI", ErrWrongPassphrase, len(ids))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the age file is damaged (%s); fix: seal the credential again", ErrNotAge, ageProblem(err))
	}
	plain, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil || len(plain) > MaxFileSize {
		clear(plain)
		return nil, fmt.Errorf("%w: the age file's content is damaged or too large; fix: seal the credential again", ErrNotAge)
	}
	return plain, nil
}

// ageProblem keeps age's own wording, which names no secret, but drops
// anything after a colon that might quote input.
func ageProblem(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i > 0 {
		s = s[:i]
	}
	return clip(s)
}

// dearmor returns the binary age file, removing ASCII armor if present.
// Armor pasted into a plist may carry indentation and CRLF; both are removed.
// Armor flattened onto one line by a web form is re-wrapped first
// (rewrapFlattened); any other damage is refused.
func dearmor(in []byte) ([]byte, error) {
	if bytes.HasPrefix(in, []byte(ageMagic)) {
		return in, nil // binary: every byte counts, trailing ones included
	}
	t := bytes.TrimSpace(in)
	if !bytes.HasPrefix(t, []byte(armorHeader)) {
		return nil, fmt.Errorf("%w: EncryptedCredential starts with neither %q nor %q; fix: seal the credential with 'rekey seal' or 'age -p'", ErrNotAge, ageV1, armorHeader)
	}
	if flat, ok := rewrapFlattened(t); ok {
		t = flat
	}
	var clean bytes.Buffer
	for line := range bytes.Lines(t) {
		clean.Write(bytes.TrimSpace(line))
		clean.WriteByte('\n')
	}
	bin, err := io.ReadAll(io.LimitReader(armor.NewReader(&clean), MaxFileSize+1))
	if err != nil || len(bin) > MaxFileSize {
		return nil, fmt.Errorf("%w: the ASCII armor is damaged; fix: paste the whole age output unchanged, from -----BEGIN to -----END", ErrNotAge)
	}
	return bin, nil
}

// WorkFactor returns the scrypt work factor (log2 N) of an age file, binary
// or ASCII-armored, from its header (ScryptWorkFactor). It derives no key.
func WorkFactor(ciphertext []byte) (int, error) {
	bin, err := dearmor(ciphertext)
	if err != nil {
		return 0, err
	}
	return ScryptWorkFactor(bin)
}

// ScryptWorkFactor reads the age header of a binary age file and returns the
// scrypt work factor (log2 N) of its only recipient. It derives no key.
func ScryptWorkFactor(bin []byte) (int, error) {
	hdr, err := age.ExtractHeader(bytes.NewReader(bin))
	if err != nil || !bytes.HasPrefix(hdr, []byte(ageV1+"\n")) {
		return 0, fmt.Errorf("%w: the age header is missing or damaged; fix: seal the credential again", ErrNotAge)
	}
	var types []string
	logN := 0
	sc := bufio.NewScanner(bytes.NewReader(hdr))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "-> ")
		if !ok {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			return 0, fmt.Errorf("%w: empty recipient line in the age header; fix: seal the credential again", ErrNotAge)
		}
		types = append(types, clip(f[0]))
		if f[0] == "scrypt" {
			n, err := strconv.Atoi(f[len(f)-1])
			if len(f) != 3 || err != nil || n < 1 {
				return 0, fmt.Errorf("%w: the scrypt recipient is malformed; fix: seal the credential again", ErrNotAge)
			}
			logN = n
		}
	}
	if len(types) == 0 {
		return 0, fmt.Errorf("%w: the age header names no recipient; fix: seal the credential again", ErrNotAge)
	}
	if len(types) != 1 || logN == 0 {
		return 0, fmt.Errorf("%w: it is encrypted to %s; fix: encrypt with a passphrase ('age -p' or 'rekey seal'), not to a public key",
			ErrNotPassphrase, strings.Join(types, ", "))
	}
	return logN, nil
}

// parseCredential validates the decrypted plist. On success the plaintext
// buffer is kept in the Credential so that Wipe can zero it.
func parseCredential(plain []byte) (*Credential, error) {
	if err := checkBounds(plain); errors.Is(err, ErrTooComplex) {
		return nil, fmt.Errorf("%w: the decrypted content would decode to more than %d objects or nest deeper than %d levels; "+
			"fix: seal a plist with ClientID, KeyID and PrivateKey ('rekey seal' writes one)", ErrBadCredential, MaxObjects, MaxDepth)
	} else if err != nil { // malformed: never handed to the decoder, which may crash on it
		return nil, fmt.Errorf("%w: the decrypted content is not a plist dictionary; fix: seal a plist with ClientID, KeyID and PrivateKey ('rekey seal' writes one)", ErrBadCredential)
	}
	var m map[string]any
	if _, err := plist.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("%w: the decrypted content is not a plist dictionary; fix: seal a plist with ClientID, KeyID and PrivateKey ('rekey seal' writes one)", ErrBadCredential)
	}
	str := func(k string) (string, error) {
		switch v := m[k].(type) {
		case nil:
			return "", nil
		case string:
			return v, nil
		case []byte:
			if k == KeyPrivateKey {
				return string(v), nil
			}
		}
		return "", credError(k, "is not a string", "write it as a <string>")
	}
	c := &Credential{plain: plain}
	var keyText string
	var err error
	fields := []struct {
		key string
		dst *string
	}{{KeyClientID, &c.ClientID}, {KeyKeyID, &c.KeyID}, {KeyCredentialName, &c.Name}, {KeyScope, &c.Scope}, {KeyPrivateKey, &keyText}}
	for _, f := range fields {
		if *f.dst, err = str(f.key); err != nil {
			return nil, err
		}
	}
	if err := c.validate(keyText); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Credential) validate(keyText string) error {
	scope, err := ScopeOf(c.ClientID)
	if err != nil {
		return credError(KeyClientID, err.Error(), "use the Client ID shown in Apple Business or School Manager, e.g. BUSINESSAPI.<uuid>")
	}
	if c.Scope != "" && c.Scope != scope {
		return credError(KeyScope, CheckScope(c.Scope, c.ClientID).Error(), "remove Scope or make it match the Client ID")
	}
	c.Scope = scope
	if err := CheckKeyID(c.KeyID); err != nil {
		return credError(KeyKeyID, err.Error(), "use the Key ID shown in Apple Business or School Manager")
	}
	if c.Name != "" {
		if err := CheckName(c.Name); err != nil {
			return credError(KeyCredentialName, err.Error(), "use 1 to 256 printable characters")
		}
	}
	key, err := ParsePrivateKey([]byte(keyText))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadCredential, KeyPrivateKey, err)
	}
	if c.PEM, err = EncodePKCS8(key); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCredential, err)
	}
	c.Key = key
	return nil
}

func credError(field, problem, fix string) error {
	return &FieldError{Field: field, Problem: problem, Fix: fix, Err: ErrBadCredential}
}
