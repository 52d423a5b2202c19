package payload

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"howett.net/plist"

	"github.com/rekeyd/rekey/agent/apple"
)

// Document is a parsed managed-preferences payload.
type Document struct {
	Entries  []Entry      // the valid entries, in file order
	Settings Settings     // with defaults filled in
	Problems []EntryError // the invalid entries; they do not stop the others
}

// Entry is one valid Credentials entry.
type Entry struct {
	Index      int    // position in Credentials, from 0
	ImportID   string // as written, or derived (see DerivedID)
	DerivedID  bool   // ImportID was not written and is the entry's hash
	Hash       string // content hash of the entry including its ImportID
	Intent     string // add, update or auto
	Target     string // TargetCredential; update and auto only
	Name       string // CredentialName
	Ciphertext []byte // the age file, binary or armored, as written
}

// Settings are the agent settings of the payload. APIBaseURL is empty when
// not set: the default then depends on the credential's scope (APIBase).
type Settings struct {
	AuthCheck    string
	TokenURL     string
	APIBaseURL   string
	SyncInterval time.Duration // 0 = never
	// RequestsPerMinute is an administrator's fixed ceiling on requests to
	// Apple per tenant; 0 = adaptive (docs/apple.md).
	RequestsPerMinute int
}

// APIBase returns the API base URL for a credential of scope.
func (s Settings) APIBase(scope string) string {
	if s.APIBaseURL != "" {
		return s.APIBaseURL
	}
	return apple.BaseURLFor(scope)
}

// DefaultSettings are the settings of a payload without a Settings dict.
func DefaultSettings() Settings {
	d, _ := time.ParseDuration(DefaultSyncInterval)
	return Settings{AuthCheck: AuthBestEffort, TokenURL: apple.DefaultTokenURL, SyncInterval: d}
}

// Parse reads an XML or binary plist payload. A problem with the file as a
// whole (ErrInvalidDocument, ErrPlaintextKey) is returned as the error; a
// problem with one entry is listed in Document.Problems and the other entries
// are still returned.
func Parse(data []byte) (*Document, error) {
	if len(data) > MaxFileSize {
		return nil, docError("file is larger than %d bytes; fix: remove unused entries", MaxFileSize)
	}
	if err := checkBounds(data); err != nil {
		if errors.Is(err, ErrTooComplex) {
			return nil, fmt.Errorf("%w: %w; fix: deliver the payload as documented (rekey seal writes one)", ErrInvalidDocument, err)
		}
		return nil, docError("not a property list (%v); fix: deliver an XML or binary plist", err)
	}
	var root any
	format, err := plist.Unmarshal(data, &root)
	if err != nil {
		return nil, docError("not a property list (%v); fix: deliver an XML or binary plist", err)
	}
	if format != plist.XMLFormat && format != plist.BinaryFormat {
		return nil, docError("%s plists are not accepted; fix: deliver an XML or binary plist", plist.FormatNames[format])
	}
	if err := findPlaintextKey(root, 0); err != nil {
		return nil, err
	}
	dict, ok := root.(map[string]any)
	if !ok {
		return nil, docError("top level is not a dictionary; fix: put %s at the top level", KeyCredentials)
	}
	doc := &Document{}
	if doc.Settings, err = parseSettings(dict[KeySettings]); err != nil {
		return nil, err
	}
	raw, ok := dict[KeyCredentials]
	if !ok {
		return nil, docError("no %s array; fix: add the %s array (rekey seal writes one)", KeyCredentials, KeyCredentials)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, docError("%s is not an array; fix: make it an array of dictionaries", KeyCredentials)
	}
	for i, item := range list {
		e, perr := parseEntry(i, item)
		if perr != nil {
			doc.Problems = append(doc.Problems, *perr)
			continue
		}
		doc.Entries = append(doc.Entries, e)
	}
	doc.dropDuplicates()
	return doc, nil
}

func docError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidDocument}, args...)...)
}

// dropDuplicates moves every entry whose ImportID occurs more than once to
// Problems: which one was meant cannot be known.
func (d *Document) dropDuplicates() {
	count := map[string]int{}
	for _, e := range d.Entries {
		count[e.ImportID]++
	}
	kept := d.Entries[:0]
	for _, e := range d.Entries {
		if count[e.ImportID] == 1 {
			kept = append(kept, e)
			continue
		}
		d.Problems = append(d.Problems, EntryError{Index: e.Index, ImportID: e.ImportID, Field: KeyImportID,
			Problem: fmt.Sprintf("%d entries share this ImportID", count[e.ImportID]),
			Fix:     "give each entry its own ImportID, or remove the repeated entry"})
	}
	d.Entries = kept
}

// parseEntry validates one Credentials item.
func parseEntry(i int, item any) (Entry, *EntryError) {
	fail := func(id, field, problem, fix string) (Entry, *EntryError) {
		return Entry{}, &EntryError{Index: i, ImportID: id, Field: field, Problem: problem, Fix: fix}
	}
	m, ok := item.(map[string]any)
	if !ok {
		return fail("", "", "not a dictionary", "make each Credentials item a dictionary")
	}
	f := entryFields{m: m}
	id, idSet := f.str(KeyImportID)
	if f.bad != "" {
		return fail("", KeyImportID, "is not a string", "write it as a <string>, or leave ImportID out")
	}
	if idSet {
		if err := CheckImportID(id); err != nil {
			return fail(clip(id), KeyImportID, err.Error(), "use a short printable id, or leave ImportID out")
		}
	}
	e := Entry{Index: i, ImportID: id}
	e.Intent, _ = f.str(KeyIntent)
	e.Target, _ = f.str(KeyTargetCredential)
	e.Name, _ = f.str(KeyCredentialName)
	ct, ctErr := ciphertextOf(m[KeyEncryptedCredential])
	if !idSet {
		e.ImportID, e.DerivedID = entryHash(m, false), true
	}
	e.Hash = entryHash(m, true)
	switch {
	case f.bad != "":
		return fail(e.ImportID, f.bad, "is not a string", "write it as a <string>")
	case f.unknown() != "":
		return fail(e.ImportID, f.unknown(), "unknown key", "check the spelling; known keys are ImportID, Intent, TargetCredential, CredentialName, EncryptedCredential")
	}
	if e.Intent == "" {
		e.Intent = IntentAuto
	}
	if err := CheckIntent(e.Intent, e.Target); err != nil {
		field := KeyIntent
		if e.Target != "" && (e.Intent == IntentAdd || checkText(e.Target) != nil) {
			field = KeyTargetCredential
		}
		return fail(e.ImportID, field, err.Error(), "set Intent to add, update or auto; TargetCredential only with update or auto")
	}
	if _, ok := m[KeyCredentialName]; !ok {
		return fail(e.ImportID, KeyCredentialName, "missing", "add a CredentialName")
	}
	if err := CheckName(e.Name); err != nil {
		return fail(e.ImportID, KeyCredentialName, err.Error(), "use 1 to 256 printable characters")
	}
	if ctErr != "" {
		return fail(e.ImportID, KeyEncryptedCredential, ctErr, "seal the credential with 'rekey seal' or 'age -p' and paste its output")
	}
	e.Ciphertext = ct
	return e, nil
}

// entryFields reads string fields and remembers the first one of wrong type.
type entryFields struct {
	m   map[string]any
	bad string
}

func (f *entryFields) str(key string) (string, bool) {
	v, ok := f.m[key]
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr && f.bad == "" {
		f.bad = key
	}
	return s, true
}

// unknown returns the first key, in sorted order, that an entry may not hold.
func (f *entryFields) unknown() string {
	for _, k := range slices.Sorted(maps.Keys(f.m)) {
		switch k {
		case KeyImportID, KeyIntent, KeyTargetCredential, KeyCredentialName, KeyEncryptedCredential:
		default:
			return clip(k)
		}
	}
	return ""
}

// ciphertextOf accepts data or a string, binary age or armored age. It returns
// a problem description, never the value.
func ciphertextOf(v any) ([]byte, string) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil, "missing"
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		return nil, "is neither data nor a string"
	}
	if !bytes.HasPrefix(b, []byte(ageMagic)) && !bytes.HasPrefix(bytes.TrimSpace(b), []byte(armorHeader)) {
		return nil, "is not an age file (binary or ASCII-armored)"
	}
	return append([]byte(nil), b...), ""
}
