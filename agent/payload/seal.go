package payload

import (
	"bytes"
	"fmt"

	"filippo.io/age"
	"filippo.io/age/armor"
	"howett.net/plist"
)

// MinWorkFactor is the lowest scrypt work factor Seal accepts (for tests and
// slow devices; the default is DefaultWorkFactor).
const MinWorkFactor = 10

// SealInput is a credential to seal. KeyPEM is the key file as downloaded.
type SealInput struct {
	Name     string
	ClientID string
	KeyID    string
	KeyPEM   []byte
}

// Check validates the input with the same rules the agent applies after
// decryption, and returns the scope and the normalised PKCS#8 PEM.
func (in SealInput) Check() (scope string, pemOut []byte, err error) {
	if err := CheckName(in.Name); err != nil {
		return "", nil, &FieldError{Field: "name", Problem: err.Error(), Fix: "give 1 to 256 printable characters", Err: ErrBadCredential}
	}
	if scope, err = ScopeOf(in.ClientID); err != nil {
		return "", nil, &FieldError{Field: "client ID", Problem: err.Error(), Fix: "copy the Client ID from Apple Business or School Manager", Err: ErrBadCredential}
	}
	if err := CheckKeyID(in.KeyID); err != nil {
		return "", nil, &FieldError{Field: "key ID", Problem: err.Error(), Fix: "copy the Key ID from Apple Business or School Manager", Err: ErrBadCredential}
	}
	key, err := ParsePrivateKey(in.KeyPEM)
	if err != nil {
		return "", nil, fmt.Errorf("check private key: %w", err)
	}
	pemOut, err = EncodePKCS8(key)
	return scope, pemOut, err
}

// Seal validates in and encrypts it to passphrase with age (scrypt, work
// factor logN), returning ASCII-armored age text: exactly what 'age -p -a'
// would write for the same plaintext plist.
func Seal(in SealInput, passphrase string, logN int) ([]byte, error) {
	if logN < MinWorkFactor || logN > MaxWorkFactorLimit {
		return nil, fmt.Errorf("seal credential: work factor %d is outside %d..%d", logN, MinWorkFactor, MaxWorkFactorLimit)
	}
	scope, keyPEM, err := in.Check()
	if err != nil {
		return nil, fmt.Errorf("seal credential: %w", err)
	}
	defer clear(keyPEM)
	plain, err := plist.MarshalIndent(map[string]any{
		KeyClientID: in.ClientID, KeyKeyID: in.KeyID, KeyPrivateKey: string(keyPEM),
		KeyCredentialName: in.Name, KeyScope: scope,
	}, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("seal credential: encode plist: %w", err)
	}
	defer clear(plain)
	out, err := Encrypt(plain, passphrase, logN)
	if err != nil {
		return nil, fmt.Errorf("seal credential: %w", err)
	}
	return out, nil
}

// Encrypt encrypts plain to passphrase with age (scrypt, work factor logN)
// and returns ASCII-armored age text, what 'age -p -a' writes. It checks
// nothing inside plain; Seal is the way to encrypt a credential.
func Encrypt(plain []byte, passphrase string, logN int) ([]byte, error) {
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, fmt.Errorf("encrypt: passphrase is empty")
	}
	rcpt.SetWorkFactor(logN)
	var out bytes.Buffer
	aw := armor.NewWriter(&out)
	w, err := age.Encrypt(aw, rcpt)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("armor: %w", err)
	}
	return out.Bytes(), nil
}

// PayloadEntry is one Credentials entry to write. Empty fields are left out.
type PayloadEntry struct {
	ImportID   string
	Intent     string
	Target     string
	Name       string
	Ciphertext []byte // armored age text; written as a string
}

// PreferenceSettings returns the managed-preference dictionary holding
// entries and settings (the keys of Settings as strings; nil = none).
func PreferenceSettings(entries []PayloadEntry, settings map[string]string) map[string]any {
	list := make([]any, 0, len(entries))
	for _, e := range entries {
		m := map[string]any{KeyCredentialName: e.Name, KeyEncryptedCredential: string(e.Ciphertext)}
		for k, v := range map[string]string{KeyImportID: e.ImportID, KeyIntent: e.Intent, KeyTargetCredential: e.Target} {
			if v != "" {
				m[k] = v
			}
		}
		list = append(list, m)
	}
	out := map[string]any{KeyCredentials: list}
	if len(settings) > 0 {
		s := map[string]any{}
		for k, v := range settings {
			s[k] = v
		}
		out[KeySettings] = s
	}
	return out
}

// MarshalPayload writes entries and settings as an XML managed-preferences
// plist, the file an MDM delivers to <domain>.plist.
func MarshalPayload(entries []PayloadEntry, settings map[string]string) ([]byte, error) {
	out, err := plist.MarshalIndent(PreferenceSettings(entries, settings), plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("encode payload plist: %w", err)
	}
	return readableNewlines(out), nil
}

// readableNewlines writes newlines in XML strings as themselves rather than
// as "&#xA;", so armored age text reads (and copies) as the block it is. The
// two are the same XML; a literal "&#xA;" in a value would have been written
// "&amp;#xA;", so nothing else is touched.
func readableNewlines(xml []byte) []byte {
	return bytes.ReplaceAll(xml, []byte("&#xA;"), []byte("\n"))
}
