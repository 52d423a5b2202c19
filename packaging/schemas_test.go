package packaging

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"howett.net/plist"
)

var update = flag.Bool("update", false, "regenerate the files under packaging/profiles from payload.Schema")

const (
	jamfSchemaFile = "profiles/jamf-custom-schema.json"
	manifestFile   = "profiles/manifest/" + platform.Domain + ".plist"
	// manifestModified is pfm_last_modified: bump it (and manifestVersion)
	// when payload.Schema changes, so that profile editors pick it up.
	manifestModified = "2026-11-30T00:00:00Z"
	manifestVersion  = 2
)

// object is a JSON object that keeps its keys in insertion order, so that
// the generated schema reads in payload.Schema's order.
type object []member

type member struct {
	key   string
	value any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jamfProperty renders one payload field as a Jamf Pro custom-schema property.
func jamfProperty(f payload.Field, order int) object {
	p := object{{"title", f.Title}, {"description", f.Description}, {"property_order", order}}
	switch f.Type {
	case "array":
		p = append(p, member{"type", "array"}, member{"items", jamfObject(f.Title+" entry", f.Children)})
	case "dict":
		p = append(p, jamfObject(f.Title, f.Children)[1:]...)
	case "data":
		// Jamf's form has no data type: the agent accepts the armored age
		// text. "textarea" (a json-editor format, which Jamf's form builder
		// honours) keeps its line breaks; armor that still loses them on the
		// way is re-wrapped by the agent.
		p[1].value = f.Description + " In Jamf Pro paste the ASCII-armored form (age -a -p, or rekey seal's armored output); line breaks lost in the form are restored by the agent."
		p = append(p, member{"type", "string"}, member{"format", "textarea"},
			member{"options", object{{"inputAttributes", object{{"placeholder", "-----BEGIN AGE ENCRYPTED FILE-----"}, {"rows", 8}}}}})
	default:
		p = append(p, member{"type", f.Type})
	}
	if f.Default != "" {
		p = append(p, member{"default", f.Default})
	}
	if len(f.Values) > 0 {
		titles := make([]string, len(f.Values))
		for i, v := range f.Values {
			titles[i] = v
			if v == f.Default {
				titles[i] += " (default)"
			}
		}
		p = append(p, member{"enum", f.Values}, member{"options", object{{"enum_titles", titles}}})
	}
	return p
}

// jamfObject renders fields as a JSON Schema object with ordered properties.
func jamfObject(title string, fields []payload.Field) object {
	props := object{}
	var required []string
	for i, f := range fields {
		props = append(props, member{f.Key, jamfProperty(f, (i+1)*10)})
		if f.Required {
			required = append(required, f.Key)
		}
	}
	o := object{{"title", title}, {"type", "object"}, {"properties", props}}
	if len(required) > 0 {
		o = append(o, member{"required", required})
	}
	return o
}

func jamfSchema() ([]byte, error) {
	body := jamfObject("", payload.Schema)[1:]
	doc := append(object{
		{"title", "rekey (" + platform.Domain + ")"},
		{"description", "Credentials and settings for the rekey credential-rotation agent. Generated from agent/payload/schema.go; do not edit."},
		{"__feedback", "https://github.com/rekeyd/rekey/issues"},
		{"options", object{{"remove_empty_properties", true}}},
	}, body...)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

var pfmTypes = map[string]string{"string": "string", "integer": "integer", "data": "data", "array": "array", "dict": "dictionary"}

// manifestSubkey renders one payload field as a ProfileManifests subkey.
func manifestSubkey(f payload.Field, nested bool) map[string]any {
	k := map[string]any{
		"pfm_name": f.Key, "pfm_title": f.Title, "pfm_description": f.Description, "pfm_type": pfmTypes[f.Type],
	}
	if f.Default != "" {
		k["pfm_default"] = f.Default
	}
	if len(f.Values) > 0 {
		k["pfm_range_list"] = f.Values
	}
	if f.Required {
		k["pfm_require"] = "always"
		if nested {
			k["pfm_require"] = "always-nested"
		}
	}
	var children []map[string]any
	for _, c := range f.Children {
		children = append(children, manifestSubkey(c, true))
	}
	switch f.Type {
	case "array":
		k["pfm_subkeys"] = []map[string]any{{"pfm_type": "dictionary", "pfm_title": "Credential", "pfm_subkeys": children}}
	case "dict":
		k["pfm_subkeys"] = children
	}
	return k
}

// payloadBaseKeys are the keys every ProfileManifests payload declares.
func payloadBaseKeys() []map[string]any {
	str := func(name, title, def string, req bool) map[string]any {
		k := map[string]any{"pfm_name": name, "pfm_title": title, "pfm_type": "string",
			"pfm_description": "Standard payload key: " + title + "."}
		if def != "" {
			k["pfm_default"] = def
		}
		if req {
			k["pfm_require"] = "always"
		}
		return k
	}
	return []map[string]any{
		str("PayloadDescription", "Payload description", "Credentials for the rekey agent", false),
		str("PayloadDisplayName", "Payload display name", "rekey", true),
		str("PayloadIdentifier", "Payload identifier", platform.Domain, true),
		str("PayloadType", "Payload type", platform.Domain, true),
		str("PayloadUUID", "Payload UUID", "", true),
		{"pfm_name": "PayloadVersion", "pfm_title": "Payload version", "pfm_type": "integer", "pfm_default": 1,
			"pfm_require": "always", "pfm_description": "Standard payload key: payload version."},
		str("PayloadOrganization", "Payload organization", "", false),
	}
}

func profileManifest() ([]byte, error) {
	modified, err := time.Parse(time.RFC3339, manifestModified)
	if err != nil {
		return nil, err
	}
	subkeys := payloadBaseKeys()
	for _, f := range payload.Schema {
		subkeys = append(subkeys, manifestSubkey(f, false))
	}
	m := map[string]any{
		"pfm_domain":            platform.Domain,
		"pfm_title":             "rekey",
		"pfm_description":       "Credentials and settings for the rekey credential-rotation agent. Generated from agent/payload/schema.go; do not edit.",
		"pfm_documentation_url": "https://github.com/rekeyd/rekey/blob/main/docs/admin-guide.md",
		"pfm_format_version":    1,
		"pfm_version":           manifestVersion,
		"pfm_last_modified":     modified,
		"pfm_platforms":         []string{"macOS"},
		"pfm_targets":           []string{"system"},
		"pfm_unique":            true,
		"pfm_subkeys":           subkeys,
	}
	out, err := plist.MarshalIndent(m, plist.XMLFormat, "\t")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// checkGenerated compares a committed file with its generator's output, or
// rewrites it under -update.
func checkGenerated(t *testing.T, path string, gen func() ([]byte, error)) {
	t.Helper()
	want, err := gen()
	if err != nil {
		t.Fatalf("generate %s: %v", path, err)
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./packaging -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s drifted from payload.Schema (-generated +committed); run go test ./packaging -update:\n%s", path, diff)
	}
}

func TestJamfSchemaMatchesPayloadSchema(t *testing.T) {
	checkGenerated(t, jamfSchemaFile, jamfSchema)

	data, _ := os.ReadFile(jamfSchemaFile)
	var doc struct {
		Title      string
		Properties map[string]struct {
			Type       string
			Items      struct{ Properties map[string]json.RawMessage }
			Properties map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if !strings.Contains(doc.Title, platform.Domain) {
		t.Errorf("title %q does not name the domain", doc.Title)
	}
	if got := keysOf(doc.Properties["Credentials"].Items.Properties); !cmp.Equal(got, childKeys(payload.KeyCredentials)) {
		t.Errorf("credential item keys %v, want %v", got, childKeys(payload.KeyCredentials))
	}
	if got := keysOf(doc.Properties["Settings"].Properties); !cmp.Equal(got, childKeys(payload.KeySettings)) {
		t.Errorf("settings keys %v, want %v", got, childKeys(payload.KeySettings))
	}
}

func TestProfileManifestMatchesPayloadSchema(t *testing.T) {
	checkGenerated(t, manifestFile, profileManifest)

	data, _ := os.ReadFile(manifestFile)
	var m struct {
		Domain  string           `plist:"pfm_domain"`
		Subkeys []map[string]any `plist:"pfm_subkeys"`
	}
	if _, err := plist.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Domain != platform.Domain {
		t.Errorf("pfm_domain %q", m.Domain)
	}
	names := map[string]bool{}
	for _, k := range m.Subkeys {
		names[k["pfm_name"].(string)] = true
	}
	for _, f := range payload.Schema {
		if !names[f.Key] {
			t.Errorf("manifest lacks %s", f.Key)
		}
	}
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// childKeys are the keys payload.Schema allows inside the top-level key.
func childKeys(top string) map[string]bool {
	out := map[string]bool{}
	for _, f := range payload.Schema {
		if f.Key == top {
			for _, c := range f.Children {
				out[c.Key] = true
			}
		}
	}
	return out
}
