package packaging

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/rekeyd/rekey/agent/apple"
	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
	"howett.net/plist"
)

const (
	exampleProfileFile = "profiles/rekey-example.mobileconfig"
	// examplePassphrase is documented as example-only: the credential in the
	// example profile is a throwaway key that no Apple account knows.
	examplePassphrase = "example-passphrase-change-me"
	// exampleWorkFactor keeps the test quick; rekey seal and age -p use 18.
	exampleWorkFactor = 15
	exampleClientID   = "BUSINESSAPI.00000000-0000-4000-8000-00000000e7a1"
	exampleKeyID      = "00000000-0000-4000-8000-0000000000e1"
	exampleName       = "Example Org (example only)"
)

// exampleCiphertext encrypts a fresh throwaway P-256 key in the credential
// plist format to the example passphrase.
func exampleCiphertext(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := plist.MarshalIndent(map[string]string{
		payload.KeyClientID:       exampleClientID,
		payload.KeyKeyID:          exampleKeyID,
		payload.KeyPrivateKey:     string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})),
		payload.KeyCredentialName: exampleName,
		payload.KeyScope:          apple.ScopeBusiness,
	}, plist.XMLFormat, "\t")
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.NewScryptRecipient(examplePassphrase)
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(exampleWorkFactor)
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(inner); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// exampleProfile is the whole unsigned configuration profile: one
// com.apple.ManagedClient.preferences payload forcing the rekey domain.
func exampleProfile(ciphertext []byte) map[string]any {
	settings := map[string]any{
		payload.KeyCredentials: []any{map[string]any{
			payload.KeyImportID:            "example-2026-11",
			payload.KeyIntent:              payload.IntentAuto,
			payload.KeyCredentialName:      exampleName,
			payload.KeyEncryptedCredential: ciphertext,
		}},
		payload.KeySettings: map[string]any{
			payload.KeyAuthCheck:    payload.AuthBestEffort,
			payload.KeySyncInterval: payload.DefaultSyncInterval,
		},
	}
	mcx := map[string]any{
		"PayloadType":        "com.apple.ManagedClient.preferences",
		"PayloadVersion":     1,
		"PayloadIdentifier":  platform.Domain + ".example.preferences",
		"PayloadUUID":        "6A1D2C9E-4B7F-4E0A-9C3D-1F2E3A4B5C60",
		"PayloadDisplayName": "rekey credentials",
		"PayloadEnabled":     true,
		"PayloadContent": map[string]any{
			platform.Domain: map[string]any{
				"Forced": []any{map[string]any{"mcx_preference_settings": settings}},
			},
		},
	}
	return map[string]any{
		"PayloadType":        "Configuration",
		"PayloadVersion":     1,
		"PayloadIdentifier":  platform.Domain + ".example",
		"PayloadUUID":        "0C5B3E1A-7D2F-4A9B-8E6C-2D4F6A8B0C11",
		"PayloadDisplayName": "rekey: example credential (EXAMPLE ONLY)",
		"PayloadDescription": "Example only. The credential inside is a throwaway key encrypted to the published passphrase " +
			examplePassphrase + "; make your own with rekey seal and a passphrase of your own.",
		"PayloadOrganization":      "Example Org",
		"PayloadScope":             "System",
		"PayloadRemovalDisallowed": false,
		"PayloadContent":           []any{mcx},
	}
}

func TestExampleProfile(t *testing.T) {
	if *update {
		out, err := plist.MarshalIndent(exampleProfile(exampleCiphertext(t)), plist.XMLFormat, "\t")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exampleProfileFile, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	settings := readExampleSettings(t)
	checkKeys(t, "payload", settings, payload.Schema)

	entries, _ := settings[payload.KeyCredentials].([]any)
	if len(entries) != 1 {
		t.Fatalf("want one credential entry, got %d", len(entries))
	}
	ciphertext, ok := entries[0].(map[string]any)[payload.KeyEncryptedCredential].([]byte)
	if !ok {
		t.Fatalf("EncryptedCredential is not data")
	}
	checkExampleCredential(t, ciphertext)
}

// readExampleSettings digs the rekey settings out of the example profile.
func readExampleSettings(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(exampleProfileFile)
	if err != nil {
		t.Fatalf("%v (run go test ./packaging -run ExampleProfile -update)", err)
	}
	var profile struct {
		PayloadType    string
		PayloadContent []struct {
			PayloadType    string
			PayloadContent map[string]struct {
				Forced []struct {
					Settings map[string]any `plist:"mcx_preference_settings"`
				}
			}
		}
	}
	if _, err := plist.Unmarshal(data, &profile); err != nil {
		t.Fatal(err)
	}
	if profile.PayloadType != "Configuration" || len(profile.PayloadContent) != 1 {
		t.Fatalf("profile type %q with %d payloads", profile.PayloadType, len(profile.PayloadContent))
	}
	mcx := profile.PayloadContent[0]
	if mcx.PayloadType != "com.apple.ManagedClient.preferences" {
		t.Fatalf("payload type %q", mcx.PayloadType)
	}
	forced := mcx.PayloadContent[platform.Domain].Forced
	if len(mcx.PayloadContent) != 1 || len(forced) != 1 {
		t.Fatalf("want exactly the %s domain with one Forced entry: %+v", platform.Domain, mcx.PayloadContent)
	}
	return forced[0].Settings
}

// checkKeys fails on any key of m that fields does not declare, or declares
// with another type, and recurses into arrays of dicts and dicts.
func checkKeys(t *testing.T, where string, m map[string]any, fields []payload.Field) {
	t.Helper()
	byKey := map[string]payload.Field{}
	for _, f := range fields {
		byKey[f.Key] = f
	}
	for k, v := range m {
		f, ok := byKey[k]
		if !ok {
			t.Errorf("%s: key %q is not in payload.Schema", where, k)
			continue
		}
		switch v := v.(type) {
		case string:
			if f.Type != "string" && f.Type != "data" {
				t.Errorf("%s.%s: string, schema says %s", where, k, f.Type)
			}
			if len(f.Values) > 0 && !strings.Contains(" "+strings.Join(f.Values, " ")+" ", " "+v+" ") {
				t.Errorf("%s.%s: %q is not one of %v", where, k, v, f.Values)
			}
		case []byte:
			if f.Type != "data" {
				t.Errorf("%s.%s: data, schema says %s", where, k, f.Type)
			}
		case []any:
			if f.Type != "array" {
				t.Errorf("%s.%s: array, schema says %s", where, k, f.Type)
			}
			for i, e := range v {
				d, _ := e.(map[string]any)
				checkKeys(t, fmt.Sprintf("%s.%s[%d]", where, k, i), d, f.Children)
			}
		case map[string]any:
			if f.Type != "dict" {
				t.Errorf("%s.%s: dict, schema says %s", where, k, f.Type)
			}
			checkKeys(t, where+"."+k, v, f.Children)
		default:
			t.Errorf("%s.%s: unexpected type %T", where, k, v)
		}
	}
	for _, f := range fields {
		if _, ok := m[f.Key]; f.Required && !ok {
			t.Errorf("%s: required key %s missing", where, f.Key)
		}
	}
}

// checkExampleCredential decrypts the example with the published passphrase
// and checks the credential inside.
func checkExampleCredential(t *testing.T, ciphertext []byte) {
	t.Helper()
	id, err := age.NewScryptIdentity(examplePassphrase)
	if err != nil {
		t.Fatal(err)
	}
	id.SetMaxWorkFactor(payload.DefaultWorkFactor)
	r, err := age.Decrypt(bytes.NewReader(ciphertext), id)
	if err != nil {
		t.Fatalf("decrypt example with the documented passphrase: %v", err)
	}
	inner, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var cred map[string]string
	if _, err := plist.Unmarshal(inner, &cred); err != nil {
		t.Fatalf("decrypted credential is not a plist dict of strings: %v", err)
	}
	if cred[payload.KeyClientID] != exampleClientID || cred[payload.KeyKeyID] != exampleKeyID || cred[payload.KeyScope] != apple.ScopeBusiness {
		t.Errorf("credential ids: %s %s %s", cred[payload.KeyClientID], cred[payload.KeyKeyID], cred[payload.KeyScope])
	}
	block, _ := pem.Decode([]byte(cred[payload.KeyPrivateKey]))
	if block == nil {
		t.Fatal("PrivateKey holds no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil || key.Curve != elliptic.P256() {
		t.Fatalf("PrivateKey is not an EC P-256 key: %v", err)
	}
	allowed := map[string]bool{payload.KeyClientID: true, payload.KeyKeyID: true, payload.KeyPrivateKey: true,
		payload.KeyCredentialName: true, payload.KeyScope: true}
	for k := range cred {
		if !allowed[k] {
			t.Errorf("decrypted credential has key %q the payload schema does not define", k)
		}
	}
}
