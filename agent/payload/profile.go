package payload

import (
	"crypto/rand"
	"fmt"

	"howett.net/plist"
)

// Profile describes a configuration profile that delivers managed
// preferences for one domain.
type Profile struct {
	Domain       string         // managed-preferences domain, e.g. com.github.rekeyd.rekey
	DisplayName  string         // shown in System Settings; default "rekey credentials"
	Organization string         // optional
	Description  string         // optional
	Preferences  map[string]any // the preference dictionary (PreferenceSettings)
}

// Identifier is the profile's PayloadIdentifier: stable for a domain, so a
// newer profile replaces the older one when installed.
func (p Profile) Identifier() string { return p.Domain + ".credentials" }

// MarshalProfile writes p as an unsigned .mobileconfig: a Configuration
// profile with one com.apple.ManagedClient.preferences payload whose content
// forces Preferences for Domain. PayloadUUIDs are fresh on every call.
func MarshalProfile(p Profile) ([]byte, error) {
	if p.Domain == "" || p.Preferences == nil {
		return nil, fmt.Errorf("encode profile: domain and preferences are required")
	}
	name := p.DisplayName
	if name == "" {
		name = "rekey credentials"
	}
	inner := map[string]any{
		"PayloadType":        "com.apple.ManagedClient.preferences",
		"PayloadVersion":     1,
		"PayloadIdentifier":  p.Identifier() + ".preferences",
		"PayloadUUID":        newUUID(),
		"PayloadDisplayName": name,
		"PayloadEnabled":     true,
		"PayloadContent": map[string]any{
			p.Domain: map[string]any{
				"Forced": []any{map[string]any{"mcx_preference_settings": p.Preferences}},
			},
		},
	}
	outer := map[string]any{
		"PayloadType":              "Configuration",
		"PayloadVersion":           1,
		"PayloadIdentifier":        p.Identifier(),
		"PayloadUUID":              newUUID(),
		"PayloadDisplayName":       name,
		"PayloadScope":             "System",
		"PayloadRemovalDisallowed": false,
		"PayloadContent":           []any{inner},
	}
	if p.Organization != "" {
		outer["PayloadOrganization"] = p.Organization
	}
	if p.Description != "" {
		outer["PayloadDescription"] = p.Description
	}
	out, err := plist.MarshalIndent(outer, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("encode profile: %w", err)
	}
	return readableNewlines(out), nil
}

// newUUID returns a random (version 4) UUID in upper case, as Apple writes them.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
