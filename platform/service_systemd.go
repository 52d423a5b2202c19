package platform

import (
	"fmt"
	"path/filepath"
	"strings"
)

// writableFlags are the `rekey run` flags naming a path the agent writes: the
// systemd unit makes their folders writable under ProtectSystem=strict.
// "dir" means the value is the folder itself, "file" its parent.
var writableFlags = map[string]string{
	"state-dir":   "dir",
	"socket":      "file",
	"status-file": "file",
}

// hiddenByUnit are the trees the unit hides from the service:
// ProtectHome=yes empties the first three, PrivateTmp=yes replaces the others.
var hiddenByUnit = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

func systemdUnit(spec ServiceSpec) ([]byte, error) {
	rw, err := readWritePaths(spec.RunArgs)
	if err != nil {
		return nil, err
	}
	for _, p := range append([]string{spec.Executable}, rw...) {
		if err := checkNotHome(strings.TrimPrefix(p, "-")); err != nil {
			return nil, err
		}
	}
	args := append([]string{spec.Executable}, spec.Arguments()...)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = systemdQuote(a)
	}
	for i, p := range rw {
		rw[i] = systemdPathQuote(p)
	}
	// Without extra folders the line goes: an empty ReadWritePaths= would
	// read as a reset, which is harmless but misleading.
	readWrite := ""
	if len(rw) > 0 {
		readWrite = "ReadWritePaths=" + strings.Join(rw, " ") + "\n"
	}
	unit := strings.NewReplacer(
		"@EXECSTART@", strings.Join(quoted, " "),
		"@READWRITE@\n", readWrite,
	).Replace(systemdUnitTemplate)
	return []byte(unit), nil
}

// runtimeDir is the folder systemd creates for the unit (RuntimeDirectory=rekey):
// the default socket lives there, so it needs no ReadWritePaths entry.
const runtimeDir = "/run/" + ServiceName

// readWritePaths returns the folders that the passed-through flags name,
// outside the unit's own state and runtime folders, each prefixed with "-" so
// that a missing folder gives the agent's own clear error rather than a
// namespace failure. The packaged unit needs none.
func readWritePaths(runArgs []string) ([]string, error) {
	var paths []string
	seen := map[string]bool{}
	for i := 0; i < len(runArgs); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(runArgs[i], "-"), "=")
		kind, ok := writableFlags[name]
		if !ok || !strings.HasPrefix(runArgs[i], "-") {
			continue
		}
		if !hasValue {
			if i+1 >= len(runArgs) {
				return nil, fmt.Errorf("%w: flag --%s needs a value", ErrServiceSpec, name)
			}
			i++
			value = runArgs[i]
		}
		if !filepath.IsAbs(value) {
			return nil, fmt.Errorf("%w: --%s %q is relative; a service needs an absolute path", ErrServiceSpec, name, value)
		}
		dir := filepath.Clean(value)
		if kind == "file" {
			dir = filepath.Dir(dir)
		}
		if !seen[dir] && !within(dir, runtimeDir) {
			seen[dir] = true
			paths = append(paths, "-"+dir)
		}
	}
	return paths, nil
}

func checkNotHome(p string) error {
	for _, h := range hiddenByUnit {
		if within(p, h) {
			return fmt.Errorf("%w: %s is under %s, which the unit hides from the service (ProtectHome=, PrivateTmp=); install rekey in a root-owned folder such as /opt/rekey/bin and keep state under /var/lib", ErrServiceSpec, p, h)
		}
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// systemdQuote writes one ExecStart word: specifiers (%) and variables ($)
// doubled, backslashes and quotes escaped, and double quotes around anything
// that is not a plain word.
func systemdQuote(s string) string {
	return systemdWord(strings.ReplaceAll(s, "$", "$$"))
}

// systemdPathQuote writes one word of a path list such as ReadWritePaths=,
// where specifiers are expanded but variables are not.
func systemdPathQuote(s string) string { return systemdWord(s) }

func systemdWord(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%").Replace(s)
	plain := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=:,+@%$", r))
	})
	if plain {
		return s
	}
	return `"` + s + `"`
}
