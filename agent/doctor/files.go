package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rekeyd/rekey/agent/payload"
	"github.com/rekeyd/rekey/platform"
)

// PassphraseFile checks the passphrase file as the agent reads it: trusted
// owner, 0600 or stricter, at least one passphrase. Absent is a warning
// (imports then wait for a UI). Passphrases are counted, never shown.
func PassphraseFile(path string, owners []int) Finding {
	const c = "passphrase-file"
	if path == "" {
		return warn(c, "pass --passphrase-file for silent rollout", "no passphrase file configured: every import waits for a UI unlock")
	}
	passes, err := payload.ReadPassphrases(path, platform.TrustRule{Owners: owners})
	var te *platform.TrustError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return warn(c, fmt.Sprintf("for silent rollout write one passphrase per line to %s (owner root, chmod 600); otherwise unlock imports with 'rekey unlock'", path),
			"%s does not exist: imports wait as pending-unlock for a UI", path)
	case errors.As(err, &te):
		return fail(c, te.Fix, "%s: %s; imports wait as pending-unlock until it is fixed", te.Path, te.Problem)
	case errors.Is(err, payload.ErrNoPassphrases):
		return fail(c, fmt.Sprintf("write one passphrase per line to %s, or remove it", path), "%s holds no passphrase", path)
	case err != nil:
		return fail(c, orRoot(err, "check the file and its folder"), "%v", err)
	}
	return ok(c, "%s: trusted, 0600, %d passphrase(s)", path, len(passes))
}

// Prefs checks the managed-preferences folder and the domain's payload file:
// both trusted (owner, no group/other write, 1 MiB), and the payload parses.
// An absent folder or file is fine: no payload has been delivered.
func Prefs(dir, domain string, owners []int) []Finding {
	const c = "managed-prefs"
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return []Finding{ok(c, "%s does not exist: no payload delivered yet (fine)", dir)}
	}
	if f, bad := prefsFolder(dir, owners); bad {
		return []Finding{f}
	}
	path := platform.PrefsFile(dir, domain)
	data, err := platform.ReadTrusted(path, platform.TrustRule{Owners: owners, MaxSize: platform.MaxManagedFileSize})
	var te *platform.TrustError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []Finding{ok(c, "%s: folder trusted; no payload for %s (fine)", dir, domain)}
	case errors.As(err, &te):
		return []Finding{fail(c, te.Fix, "%s: %s; the payload is refused and nothing in it is applied", te.Path, te.Problem)}
	case err != nil:
		return []Finding{fail(c, orRoot(err, "check the file and its folder"), "%v", err)}
	}
	doc, err := payload.Parse(data)
	if err != nil {
		return []Finding{fail(c, "re-create the payload with 'rekey seal' (or fix the profile in the MDM)", "%s does not parse: %v", path, err)}
	}
	out := []Finding{ok(c, "%s: trusted, parses, %d credential entries", path, len(doc.Entries))}
	for _, p := range doc.Problems {
		out = append(out, warn(c, p.Fix, "%s: %s", path, p.Error()))
	}
	return out
}

// prefsFolder checks the folder (and, if it is a symlink, where it leads):
// owned by a trusted uid and not writable by group or others.
func prefsFolder(dir string, owners []int) (Finding, bool) {
	const c = "managed-prefs"
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fail(c, "remove the broken link, or recreate the folder owned by root", "resolve %s: %v", dir, err), true
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fail(c, "check the path", "inspect %s: %v", real, err), true
	}
	via := ""
	if real != filepath.Clean(dir) {
		via = fmt.Sprintf(" (%s leads to %s)", dir, real)
	}
	if !fi.IsDir() {
		return fail(c, fmt.Sprintf("remove %q; the MDM creates the folder", dir), "%s is not a folder%s", real, via), true
	}
	if uid, known := owner(fi); known && !contains(owners, uid) {
		return fail(c, fmt.Sprintf("make %q a real folder owned by root (chown root), not a link to another user's folder", dir),
			"folder %s%s is owned by uid %d, not by an allowed owner %v: payloads in it are refused", real, via, uid, owners), true
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		fix := fmt.Sprintf("chmod go-w %q", real)
		if via != "" {
			fix = fmt.Sprintf("replace the link %q by a real folder owned by root, mode 755", dir)
		}
		return fail(c, fix,
			"folder %s%s has mode %04o, writable by group or others: payloads in it are refused", real, via, perm), true
	}
	return Finding{}, false
}
