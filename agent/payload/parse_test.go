package payload

import (
	"errors"
	"strings"
	"testing"
	"time"

	"howett.net/plist"

	"github.com/rekeyd/rekey/agent/apple"
)

func entry(name string, ct any, kv ...string) map[string]any {
	m := map[string]any{KeyCredentialName: name, KeyEncryptedCredential: ct}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func doc(entries ...any) map[string]any { return map[string]any{KeyCredentials: entries} }

func TestParseXMLAndBinary(t *testing.T) {
	ct := sealed(t, newKeyPEM(t))
	bin := encryptPlist(t, map[string]any{"x": "y"})
	v := doc(
		entry("Acme", string(ct)),
		entry("Beta", bin, KeyImportID, "beta-2026", KeyIntent, IntentUpdate, KeyTargetCredential, "Beta old"),
	)
	for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
		d, err := Parse(marshal(t, v, format))
		if err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		if len(d.Problems) != 0 || len(d.Entries) != 2 {
			t.Fatalf("format %d: entries %d, problems %v", format, len(d.Entries), d.Problems)
		}
		a, b := d.Entries[0], d.Entries[1]
		if a.Intent != IntentAuto || !a.DerivedID || len(a.ImportID) != 64 || a.Hash != a.ImportID || string(a.Ciphertext) != string(ct) {
			t.Fatalf("entry 0: %+v", a)
		}
		if b.ImportID != "beta-2026" || b.DerivedID || b.Intent != IntentUpdate || b.Target != "Beta old" || b.Name != "Beta" || b.Index != 1 || b.Hash == b.ImportID {
			t.Fatalf("entry 1: %+v", b)
		}
		if d.Settings != DefaultSettings() || d.Settings.SyncInterval != 24*time.Hour {
			t.Fatalf("settings %+v", d.Settings)
		}
	}
}

func TestParseHashesAreStableAndContentSensitive(t *testing.T) {
	ct := sealed(t, newKeyPEM(t))
	parse := func(v any) Entry {
		t.Helper()
		d, err := Parse(marshal(t, v, plist.XMLFormat))
		if err != nil || len(d.Entries) != 1 {
			t.Fatalf("parse: %v %+v", err, d)
		}
		return d.Entries[0]
	}
	a := parse(doc(entry("Acme", string(ct), KeyImportID, "id-1")))
	again := parse(doc(entry("Acme", string(ct), KeyImportID, "id-1")))
	renamed := parse(doc(entry("Acme 2", string(ct), KeyImportID, "id-1")))
	if a.Hash != again.Hash || a.Hash == renamed.Hash || renamed.ImportID != a.ImportID {
		t.Fatalf("hash %s / %s / %s", a.Hash, again.Hash, renamed.Hash)
	}
	derived := parse(doc(entry("Acme", string(ct))))
	auto := parse(doc(entry("Acme", string(ct), KeyIntent, IntentAuto)))
	if derived.ImportID == auto.ImportID {
		t.Fatal("an explicit Intent should change the derived ImportID (values are hashed as written)")
	}
	id, hash := EntryImportID("", "", "", "Acme", string(ct))
	if id != derived.ImportID || hash != derived.Hash {
		t.Fatalf("EntryImportID %s %s, Parse %s %s", id, hash, derived.ImportID, derived.Hash)
	}
	id, hash = EntryImportID("id-1", "", "", "Acme", string(ct))
	if id != "id-1" || hash != a.Hash {
		t.Fatalf("EntryImportID with id: %s %s, want %s", id, hash, a.Hash)
	}
}

func TestParseEntryProblemsKeepGoodEntries(t *testing.T) {
	ct := string(sealed(t, newKeyPEM(t)))
	tests := []struct {
		name  string
		entry any
		field string
		says  string
	}{
		{"not a dict", "hello", "", "not a dictionary"},
		{"missing name", map[string]any{KeyEncryptedCredential: ct}, KeyCredentialName, "missing"},
		{"blank name", entry("  ", ct), KeyCredentialName, "empty"},
		{"name with control char", entry("a\x01b", ct), KeyCredentialName, "control character"},
		{"bad intent", entry("A", ct, KeyIntent, "replace"), KeyIntent, `"replace" is not add, update or auto`},
		{"target with add", entry("A", ct, KeyIntent, IntentAdd, KeyTargetCredential, "Old"), KeyTargetCredential, "only for update or auto"},
		{"missing ciphertext", map[string]any{KeyCredentialName: "A"}, KeyEncryptedCredential, "missing"},
		{"ciphertext not age", entry("A", "hello world"), KeyEncryptedCredential, "not an age file"},
		{"ciphertext wrong type", entry("A", 42), KeyEncryptedCredential, "neither data nor a string"},
		{"name not string", map[string]any{KeyCredentialName: 7, KeyEncryptedCredential: ct}, KeyCredentialName, "not a string"},
		{"empty import id", entry("A", ct, KeyImportID, ""), KeyImportID, "empty"},
		{"import id not string", map[string]any{KeyCredentialName: "A", KeyEncryptedCredential: ct, KeyImportID: 5}, KeyImportID, "not a string"},
		{"unknown key", entry("A", ct, "TargetCredentail", "x"), "TargetCredentail", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(marshal(t, doc(tt.entry, entry("Good", ct, KeyImportID, "good")), plist.BinaryFormat))
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Entries) != 1 || d.Entries[0].ImportID != "good" {
				t.Fatalf("good entry lost: %+v", d.Entries)
			}
			if len(d.Problems) != 1 {
				t.Fatalf("problems %v", d.Problems)
			}
			p := d.Problems[0]
			if p.Index != 0 || p.Field != tt.field || !strings.Contains(p.Problem, tt.says) || p.Fix == "" || !errors.Is(&p, ErrInvalidEntry) {
				t.Fatalf("problem %+v", p)
			}
			if strings.Contains(p.Error(), "BEGIN AGE") {
				t.Fatalf("error quotes the ciphertext: %v", p.Error())
			}
		})
	}
}

func TestParseDuplicateImportIDsRefuseEveryCopy(t *testing.T) {
	ct := string(sealed(t, newKeyPEM(t)))
	v := doc(entry("A", ct, KeyImportID, "same"), entry("B", ct, KeyImportID, "other"), entry("C", ct, KeyImportID, "same"))
	d, err := Parse(marshal(t, v, plist.XMLFormat))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Entries) != 1 || d.Entries[0].Name != "B" || len(d.Problems) != 2 {
		t.Fatalf("entries %+v problems %v", d.Entries, d.Problems)
	}
	for _, p := range d.Problems {
		if p.ImportID != "same" || p.Field != KeyImportID || !strings.Contains(p.Error(), "2 entries share") {
			t.Fatalf("problem %v", p.Error())
		}
	}
}

func TestParseSettings(t *testing.T) {
	v := doc()
	v[KeySettings] = map[string]any{KeyAuthCheck: AuthRequired, KeyTokenURL: "http://127.0.0.1:8080/token",
		KeyAPIBaseURL: "https://api.example.test", KeySyncInterval: "0"}
	d, err := Parse(marshal(t, v, plist.XMLFormat))
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{AuthCheck: AuthRequired, TokenURL: "http://127.0.0.1:8080/token", APIBaseURL: "https://api.example.test"}
	if d.Settings != want || d.Settings.APIBase(apple.ScopeSchool) != "https://api.example.test" {
		t.Fatalf("settings %+v", d.Settings)
	}
	if DefaultSettings().APIBase(apple.ScopeSchool) != apple.SchoolBaseURL || DefaultSettings().APIBase(apple.ScopeBusiness) != apple.BusinessBaseURL {
		t.Fatal("APIBase defaults by scope")
	}
}

func TestParseDocumentRefusals(t *testing.T) {
	badSettings := func(k string, v any) []byte {
		d := doc()
		d[KeySettings] = map[string]any{k: v}
		return marshal(t, d, plist.XMLFormat)
	}
	tests := []struct {
		name string
		data []byte
		says string
	}{
		{"not a plist", []byte("<?xml version=\"1.0\"?><plist><dict><key>"), "not a property list"},
		{"bare word", []byte("hello"), "not accepted"},
		{"openstep", []byte(`{Credentials = ();}`), "not accepted"},
		{"top level array", marshal(t, []any{"a"}, plist.XMLFormat), "not a dictionary"},
		{"no credentials", marshal(t, map[string]any{"x": "y"}, plist.XMLFormat), "no Credentials"},
		{"credentials not array", marshal(t, map[string]any{KeyCredentials: "x"}, plist.XMLFormat), "not an array"},
		{"auth check typo", badSettings(KeyAuthCheck, "requried"), `Settings.AuthCheck: "requried" is not`},
		{"token url http", badSettings(KeyTokenURL, "http://evil.example/token"), "other than localhost"},
		{"token url relative", badSettings(KeyTokenURL, "/token"), "not an absolute URL"},
		{"sync interval", badSettings(KeySyncInterval, "daily"), "not a duration"},
		{"negative interval", badSettings(KeySyncInterval, "-1h"), "not a duration"},
		{"unknown setting", badSettings("AuthChek", "off"), "unknown setting"},
		{"setting not string", badSettings(KeySyncInterval, 5), "not a string"},
		{"too large", make([]byte, MaxFileSize+1), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.data)
			if d != nil || !errors.Is(err, ErrInvalidDocument) || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "fix:") {
				t.Fatalf("got %v, %v; want ErrInvalidDocument saying %q", d, err, tt.says)
			}
		})
	}
}

func TestParseRefusesPlaintextKeyAnywhere(t *testing.T) {
	key := newKeyPEM(t)
	ct := string(sealed(t, key))
	tests := map[string]any{
		"PrivateKey key at top": map[string]any{KeyCredentials: []any{}, KeyPrivateKey: "x"},
		"PrivateKey in entry":   doc(entry("A", ct, KeyPrivateKey, "x")),
		"PEM in a string":       doc(entry(string(key), ct)),
		"PEM in data":           doc(entry("A", key)),
		"PKCS8 PEM in unknown":  map[string]any{KeyCredentials: []any{}, "Notes": []any{"-----BEGIN PRIVATE KEY-----\nAAAA"}},
		"PEM as a top key":      map[string]any{KeyCredentials: []any{}, string(key): "x"},
		"PEM as a nested key":   map[string]any{KeyCredentials: []any{}, "Notes": map[string]any{string(key): true}},
	}
	for name, v := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(marshal(t, v, plist.BinaryFormat))
			if !errors.Is(err, ErrPlaintextKey) || !strings.Contains(err.Error(), "rekey seal") {
				t.Fatalf("got %v", err)
			}
			if strings.Contains(err.Error(), string(key[40:80])) {
				t.Fatal("error quotes the key")
			}
		})
	}
}
