package payload

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rekeyd/rekey/agent/apple"
)

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// maxTextLen bounds names, ids and targets.
const maxTextLen = 256

// ScopeOf validates a Client ID (BUSINESSAPI.<uuid> or SCHOOLAPI.<uuid>) and
// returns its scope. The problem text never holds more than the prefix.
func ScopeOf(clientID string) (string, error) {
	scope := apple.ScopeFor(clientID)
	if scope == "" {
		return "", fmt.Errorf("client ID does not start with %s or %s", apple.ClientIDPrefixBusiness, apple.ClientIDPrefixSchool)
	}
	rest := clientID[len(apple.ClientIDPrefix(scope)):]
	if !uuidRe.MatchString(rest) {
		return "", fmt.Errorf("client ID after %q is not a UUID", clientID[:len(clientID)-len(rest)])
	}
	return scope, nil
}

// CheckKeyID validates a Key ID: a UUID.
func CheckKeyID(keyID string) error {
	if !uuidRe.MatchString(keyID) {
		return fmt.Errorf("key ID is not a UUID (form 8-4-4-4-12 hex digits)")
	}
	return nil
}

// CheckScope checks an explicit Scope against the one the Client ID implies.
func CheckScope(scope, clientID string) error {
	want, err := ScopeOf(clientID)
	if err != nil {
		return err
	}
	if scope != "" && scope != want {
		return fmt.Errorf("scope %q disagrees with the Client ID, which is for %q", scope, want)
	}
	return nil
}

// CheckName validates a credential name: 1 to 256 printable characters.
func CheckName(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("name is empty")
	}
	return checkText(name)
}

// CheckImportID validates an explicit ImportID: 1 to 256 printable characters.
func CheckImportID(id string) error {
	if id == "" {
		return fmt.Errorf("ImportID is empty")
	}
	return checkText(id)
}

// CheckIntent validates an intent and a target together; intent "" means auto.
func CheckIntent(intent, target string) error {
	switch intent {
	case "", IntentAuto, IntentUpdate:
	case IntentAdd:
		if target != "" {
			return fmt.Errorf("TargetCredential is only for update or auto, not add")
		}
	default:
		return fmt.Errorf("intent %q is not %s, %s or %s", clip(intent), IntentAdd, IntentUpdate, IntentAuto)
	}
	if target != "" {
		return checkText(target)
	}
	return nil
}

func checkText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("text is not valid UTF-8")
	}
	if utf8.RuneCountInString(s) > maxTextLen {
		return fmt.Errorf("text is longer than %d characters", maxTextLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("text holds a control character")
		}
	}
	return nil
}

// clip shortens a user-supplied value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
