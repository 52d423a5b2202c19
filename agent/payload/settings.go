package payload

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// parseSettings validates the Settings dict. A bad setting refuses the whole
// document: falling back to a default (say best-effort for a misspelt
// "required") would quietly weaken what the admin asked for.
func parseSettings(v any) (Settings, error) {
	s := DefaultSettings()
	if v == nil {
		return s, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return s, settingsError(KeySettings, "is not a dictionary", "make Settings a dictionary or remove it")
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		if k == KeyRequestsPerMinute {
			if err := s.setRate(raw); err != nil {
				return s, err
			}
			continue
		}
		str, ok := raw.(string)
		if !ok {
			return s, settingsError(k, "is not a string", "write it as a <string>")
		}
		if err := s.set(k, str); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (s *Settings) set(key, v string) error {
	switch key {
	case KeyAuthCheck:
		switch v {
		case AuthRequired, AuthBestEffort, AuthOff:
			s.AuthCheck = v
		default:
			return settingsError(key, fmt.Sprintf("%q is not required, best-effort or off", clip(v)), "use one of required, best-effort, off")
		}
	case KeyTokenURL, KeyAPIBaseURL:
		if err := checkURL(v); err != nil {
			return settingsError(key, err.Error(), "use an https:// URL (http:// only for localhost)")
		}
		if key == KeyTokenURL {
			s.TokenURL = v
		} else {
			s.APIBaseURL = v
		}
	case KeySyncInterval:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return settingsError(key, fmt.Sprintf("%q is not a duration", clip(v)), `use a Go duration such as "24h" or "90m", or "0" to never sync`)
		}
		s.SyncInterval = d
	default:
		return settingsError(clip(key), "unknown setting", "check the spelling; known settings are AuthCheck, TokenURL, APIBaseURL, SyncInterval, RequestsPerMinute")
	}
	return nil
}

// MaxRequestsPerMinute bounds RequestsPerMinute.
const MaxRequestsPerMinute = 100_000

// setRate reads RequestsPerMinute: an <integer> (or a string of digits)
// from 1 to MaxRequestsPerMinute.
func (s *Settings) setRate(raw any) error {
	var n int64
	switch v := raw.(type) {
	case int64:
		n = v
	case uint64:
		n = int64(min(v, MaxRequestsPerMinute+1))
	case string:
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return settingsError(KeyRequestsPerMinute, fmt.Sprintf("%q is not a whole number", clip(v)), "write it as an <integer>, e.g. 20")
		}
	default:
		return settingsError(KeyRequestsPerMinute, "is not an integer", "write it as an <integer>, e.g. 20, or remove it for the adaptive default")
	}
	if n < 1 || n > MaxRequestsPerMinute {
		return settingsError(KeyRequestsPerMinute, fmt.Sprintf("%d is out of range", n),
			fmt.Sprintf("use 1 to %d, or remove it for the adaptive default", MaxRequestsPerMinute))
	}
	s.RequestsPerMinute = int(n)
	return nil
}

func settingsError(field, problem, fix string) error {
	return &FieldError{Field: KeySettings + "." + field, Problem: problem, Fix: fix, Err: ErrInvalidDocument}
}

// CheckURL applies the rule of the TokenURL and APIBaseURL settings to an
// endpoint given another way (a manual add): https, or http to localhost.
func CheckURL(v string) error { return checkURL(v) }

// checkURL accepts absolute https URLs, and http URLs to a loopback host
// (local test servers).
func checkURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", clip(v))
	}
	if u.User != nil {
		return fmt.Errorf("URL holds user information")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("http URL to a host other than localhost")
	}
	return fmt.Errorf("scheme %q is not https", clip(u.Scheme))
}
