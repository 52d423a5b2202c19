// Package payload reads managed-preferences payloads: the plist, its trust,
// the age-encrypted credential inside it and the private key in that.
package payload

import "github.com/rekeyd/rekey/agent/apple"

// Key names of the managed-preferences payload. These constants and Schema
// are the single source of truth: the parser, `rekey seal`, the example
// profiles and the MDM schemas under packaging/ all come from (or are tested
// against) them. Apple's scopes, Client ID prefixes and endpoints are
// package apple's.
const (
	KeyCredentials         = "Credentials"
	KeyImportID            = "ImportID"
	KeyIntent              = "Intent"
	KeyTargetCredential    = "TargetCredential"
	KeyCredentialName      = "CredentialName"
	KeyEncryptedCredential = "EncryptedCredential"
	KeySettings            = "Settings"
	KeyAuthCheck           = "AuthCheck"
	KeyTokenURL            = "TokenURL"
	KeyAPIBaseURL          = "APIBaseURL"
	KeySyncInterval        = "SyncInterval"
	KeyRequestsPerMinute   = "RequestsPerMinute"

	// Keys of the decrypted credential plist.
	KeyClientID   = "ClientID"
	KeyKeyID      = "KeyID"
	KeyPrivateKey = "PrivateKey"
	KeyScope      = "Scope"
)

// Intent values.
const (
	IntentAdd    = "add"
	IntentUpdate = "update"
	IntentAuto   = "auto"
)

// AuthCheck values.
const (
	AuthRequired   = "required"
	AuthBestEffort = "best-effort"
	AuthOff        = "off"
)

// Defaults and limits of the payload (docs/admin-guide.md).
const (
	DefaultSyncInterval = "24h"   // between device syncs
	DefaultWorkFactor   = 18      // scrypt log2(N) that rekey seal writes
	MaxWorkFactorLimit  = 20      // highest scrypt log2(N) the agent accepts
	MaxFileSize         = 1 << 20 // a larger payload file is refused
)

// Field describes one key of the payload for schemas and documentation.
type Field struct {
	Key         string
	Type        string // string, data, array, dict
	Required    bool
	Default     string
	Values      []string // allowed values, when an enumeration
	Title       string
	Description string
	Children    []Field // for array (its dict items) and dict
}

// Schema is the payload's structure, top level first.
var Schema = []Field{
	{
		Key: KeyCredentials, Type: "array", Required: true, Title: "Credentials",
		Description: "Credentials to import. Each entry is imported once, identified by its ImportID.",
		Children: []Field{
			{Key: KeyImportID, Type: "string", Title: "Import ID",
				Description: "Unique id of this import. Default: hex SHA-256 of the entry."},
			{Key: KeyIntent, Type: "string", Default: IntentAuto, Values: []string{IntentAdd, IntentUpdate, IntentAuto}, Title: "Intent",
				Description: "add a new credential, update (replace) an existing one, or decide automatically."},
			{Key: KeyTargetCredential, Type: "string", Title: "Target credential",
				Description: "update or auto (not add): the credential to replace, by id, name, Key ID or Client ID. Must match exactly one; with auto it is used instead of the Client ID match."},
			{Key: KeyCredentialName, Type: "string", Required: true, Title: "Credential name",
				Description: "Name shown for this credential in every UI."},
			{Key: KeyEncryptedCredential, Type: "data", Required: true, Title: "Encrypted credential",
				Description: "The credential encrypted with age to a passphrase (age -p or rekey seal), binary data or ASCII-armored string."},
		},
	},
	{
		Key: KeySettings, Type: "dict", Title: "Settings",
		Description: "Agent settings delivered with the payload.",
		Children: []Field{
			{Key: KeyAuthCheck, Type: "string", Default: AuthBestEffort, Values: []string{AuthRequired, AuthBestEffort, AuthOff}, Title: "Auth check",
				Description: "Whether a new credential must obtain a token before cut-over."},
			{Key: KeyTokenURL, Type: "string", Default: apple.DefaultTokenURL, Title: "Token URL",
				Description: "OAuth 2 token endpoint."},
			{Key: KeyAPIBaseURL, Type: "string", Title: "API base URL",
				Description: "Default by scope: " + apple.BusinessBaseURL + " or " + apple.SchoolBaseURL + "."},
			{Key: KeySyncInterval, Type: "string", Default: DefaultSyncInterval, Title: "Sync interval",
				Description: "Go duration between device syncs; \"0\" never syncs."},
			{Key: KeyRequestsPerMinute, Type: "integer", Title: "Requests per minute",
				Description: "Fixed ceiling on requests to Apple per tenant; unset adapts to Apple's rate limit."},
		},
	},
}
