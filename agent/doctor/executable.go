package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rekeyd/rekey/platform"
)

// Executable checks the binary at exe, symlinks resolved, and every folder
// above it up to top ("/" for the real check; a test passes its temporary
// folder): each must be owned by one of owners and not writable by group or
// others. Otherwise someone other than root can replace, or rename away, the
// program the root service runs — as on an Intel Mac where Homebrew made
// /usr/local/bin a user's folder.
func Executable(exe, top string, owners []int) Finding {
	const c = "executable"
	reinstall := fmt.Sprintf("or reinstall with the rekey package, which puts the binary in a root-owned folder (%s on macOS, %s on Linux)",
		filepath.Dir(platform.PackagedExecutableDarwin), filepath.Dir(platform.PackagedExecutableLinux))
	real, err := filepath.EvalSymlinks(exe)
	if errors.Is(err, fs.ErrNotExist) {
		return warn(c, "restart the service so that it runs the installed binary, then run doctor again",
			"%s no longer exists: it was replaced or removed after this process started", exe)
	}
	if err != nil {
		return fail(c, orRoot(err, "check the path and its folders' permissions"), "resolve %s: %v", exe, err)
	}
	if t, err := filepath.EvalSymlinks(top); err == nil {
		top = t
	}
	top = filepath.Clean(top)
	var bad, chown, chmod []string
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return fail(c, orRoot(err, "check the path and its folders' permissions"), "inspect %s: %v", p, err)
		}
		if uid, known := owner(fi); known && !contains(owners, uid) {
			bad = append(bad, fmt.Sprintf("%s is owned by uid %d", p, uid))
			chown = append(chown, strconv.Quote(p))
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			bad = append(bad, fmt.Sprintf("%s has mode %04o", p, perm))
			chmod = append(chmod, strconv.Quote(p))
		}
		if p == top || p == filepath.Dir(p) {
			break
		}
	}
	via := ""
	if real != filepath.Clean(exe) {
		via = fmt.Sprintf(" (%s leads to it)", exe)
	}
	if len(bad) == 0 {
		return ok(c, "%s%s and every folder above it: owned by an allowed owner, not writable by group or others", real, via)
	}
	var fix []string
	if len(chown) > 0 {
		fix = append(fix, "chown root "+strings.Join(chown, " "))
	}
	if len(chmod) > 0 {
		fix = append(fix, "chmod go-w "+strings.Join(chmod, " "))
	}
	return fail(c, strings.Join(fix, "; ")+"; "+reinstall,
		"%s%s can be replaced by someone other than an allowed owner %v: %s", real, via, owners, strings.Join(bad, ", "))
}
