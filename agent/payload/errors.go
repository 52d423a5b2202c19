package payload

import (
	"errors"
	"fmt"
)

// Sentinels callers branch on. Every error returned by this package wraps one.
var (
	// ErrInvalidDocument: the file as a whole is unusable (not a plist, wrong
	// shape, too large, bad Settings). Nothing in it is acted on.
	ErrInvalidDocument = errors.New("invalid payload")
	// ErrPlaintextKey: the file holds an unencrypted private key. Managed
	// preferences are world-readable, so the whole file is refused.
	ErrPlaintextKey = errors.New("plaintext private key in managed preferences")
	// ErrInvalidEntry: one Credentials entry is unusable; see EntryError.
	ErrInvalidEntry = errors.New("invalid credential entry")

	// ErrWrongPassphrase: no passphrase given decrypts the credential.
	ErrWrongPassphrase = errors.New("no passphrase fits")
	// ErrWorkFactor: the scrypt work factor is above the agent's cap.
	ErrWorkFactor = errors.New("scrypt work factor above the limit")
	// ErrNotAge: EncryptedCredential is not an age file.
	ErrNotAge = errors.New("not an age-encrypted file")
	// ErrNotPassphrase: the age file is encrypted to a key, not a passphrase.
	ErrNotPassphrase = errors.New("age file not encrypted to a passphrase")
	// ErrBadCredential: the decrypted credential is not a valid credential plist.
	ErrBadCredential = errors.New("invalid decrypted credential")

	// ErrKeyEmpty: no private key text at all.
	ErrKeyEmpty = errors.New("private key is empty")
	// ErrKeyNotPEM: the key text holds no PEM block or an unreadable one.
	ErrKeyNotPEM = errors.New("private key is not a PEM key")
	// ErrKeyEncrypted: the PEM key is itself password-protected.
	ErrKeyEncrypted = errors.New("private key is password-protected")
	// ErrKeyType: the key is not an EC key (RSA, Ed25519, ...).
	ErrKeyType = errors.New("private key is not an EC key")
	// ErrKeyCurve: an EC key on a curve other than P-256.
	ErrKeyCurve = errors.New("private key is not on curve P-256")

	// ErrNoPassphrases: a passphrase file holds no passphrase.
	ErrNoPassphrases = errors.New("no passphrase in file")
)

// EntryError is a problem with one Credentials entry. Other entries of the
// same document are still used. It unwraps to ErrInvalidEntry.
type EntryError struct {
	Index    int    // position in Credentials, from 0
	ImportID string // as written, or derived; empty when unknown
	Field    string // the key at fault; empty for the entry as a whole
	Problem  string
	Fix      string
}

func (e *EntryError) Error() string {
	who := fmt.Sprintf("credential entry %d", e.Index)
	if e.ImportID != "" {
		who += fmt.Sprintf(" (ImportID %q)", e.ImportID)
	}
	if e.Field != "" {
		who += ": " + e.Field
	}
	return fmt.Sprintf("%s: %s; fix: %s", who, e.Problem, e.Fix)
}

// Unwrap returns ErrInvalidEntry.
func (e *EntryError) Unwrap() error { return ErrInvalidEntry }

// FieldError is a problem with one field outside the entries (Settings, the
// decrypted credential, seal inputs). It wraps the sentinel in Err.
type FieldError struct {
	Field   string
	Problem string
	Fix     string
	Err     error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s; fix: %s", e.Field, e.Problem, e.Fix)
}

// Unwrap returns the sentinel the error belongs to.
func (e *FieldError) Unwrap() error { return e.Err }
