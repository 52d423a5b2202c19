package platform

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUntrusted is wrapped by every refusal of ReadTrusted: the file exists but
// fails the trust rule and must not be acted on.
var ErrUntrusted = errors.New("untrusted file")

// MaxManagedFileSize is the largest managed-preferences file DefaultTrust accepts.
const MaxManagedFileSize = 1 << 20

// TrustRule says which files ReadTrusted accepts.
type TrustRule struct {
	Owners  []int // uids allowed to own the file and its folder
	MaxSize int64 // larger files are refused; 0 = no limit
	Private bool  // no group/other permission bits at all (0600 or stricter)
}

// DefaultTrust is the rule for managed preferences: owned by root, or by the
// agent's own effective uid when it is not root, at most 1 MiB.
func DefaultTrust() TrustRule {
	owners := []int{0}
	if euid := os.Geteuid(); euid > 0 {
		owners = append(owners, euid)
	}
	return TrustRule{Owners: owners, MaxSize: MaxManagedFileSize}
}

// TrustError is a refusal by ReadTrusted. Problem says what is wrong and Fix
// the command or change that makes the file trusted. It unwraps to ErrUntrusted.
type TrustError struct {
	Path    string
	Problem string
	Fix     string
}

func (e *TrustError) Error() string {
	return fmt.Sprintf("refuse %s: %s; fix: %s", e.Path, e.Problem, e.Fix)
}

// Unwrap returns ErrUntrusted.
func (e *TrustError) Unwrap() error { return ErrUntrusted }

// ReadTrusted reads path if it passes rule r, and refuses it with a
// *TrustError otherwise. The file must be a regular file, or a symlink to one,
// owned by one of r.Owners and not writable by group or others; the folder
// holding the link, the folder holding its target and the folder holding
// every symlink met on the way (a link in the middle of a chain, or a link
// standing for a folder) must pass the same owner and write checks. The file's own checks are made on the opened descriptor,
// and the descriptor is the one read, so the file cannot be swapped between
// check and use. At most r.MaxSize+1 bytes are ever read.
//
// A missing file (or a symlink to a missing file) is not a refusal: the error
// then wraps fs.ErrNotExist, which callers treat as "no payload".
func ReadTrusted(path string, r TrustRule) ([]byte, error) {
	if _, err := os.Lstat(path); err != nil {
		return nil, fmt.Errorf("read trusted file: %w", err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	f, err := openNoBlock(target)
	if err != nil {
		return nil, fmt.Errorf("open trusted file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat trusted file: %w", err)
	}
	if err := checkFile(target, fi, r); err != nil {
		return nil, err
	}
	if err := checkResolvedSame(target, fi); err != nil {
		return nil, err
	}
	links, err := linkFolders(path)
	if err != nil {
		return nil, err
	}
	for _, dir := range append(foldersOf(path, target), links...) {
		if err := checkFolder(dir, r); err != nil {
			return nil, err
		}
	}
	return readLimited(f, target, r.MaxSize)
}

// maxLinks bounds the symlinks followed while resolving one path.
const maxLinks = 40

// linkFolders resolves path one component at a time and returns the folder
// holding each symlink met on the way — links in the middle of a chain and
// links standing for folders included. Whoever may write one of those
// folders may repoint the link, so each must pass the folder checks too.
func linkFolders(path string) ([]string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", path, err)
	}
	var folders []string
	seen := map[string]bool{}
	resolved := string(filepath.Separator)
	rest := strings.Split(abs, string(filepath.Separator))
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if hops++; hops > maxLinks {
			return nil, &TrustError{Path: path, Problem: fmt.Sprintf("more than %d symlinks on the way", maxLinks),
				Fix: "point the link at the file directly"}
		}
		if !seen[resolved] {
			seen[resolved] = true
			folders = append(folders, resolved)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", path, err)
		}
		if filepath.IsAbs(target) {
			resolved = string(filepath.Separator)
		}
		rest = append(strings.Split(target, string(filepath.Separator)), rest...)
	}
	return folders, nil
}

// foldersOf returns the folder of the link (absolute) and of its target,
// once each.
func foldersOf(path, target string) []string {
	linkDir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		linkDir = filepath.Dir(path)
	}
	linkDir, _ = filepath.EvalSymlinks(linkDir)
	targetDir, err := filepath.Abs(filepath.Dir(target))
	if err != nil {
		targetDir = filepath.Dir(target)
	}
	if linkDir == "" || linkDir == targetDir {
		return []string{targetDir}
	}
	return []string{linkDir, targetDir}
}

func checkFile(path string, fi fs.FileInfo, r TrustRule) error {
	if !fi.Mode().IsRegular() {
		return &TrustError{Path: path, Problem: fmt.Sprintf("not a regular file (%s)", fi.Mode().Type()),
			Fix: "deliver the payload as a regular file (the MDM writes one)"}
	}
	if err := checkOwner(path, fi, r, "file"); err != nil {
		return err
	}
	perm := fi.Mode().Perm()
	if r.Private && perm&0o077 != 0 {
		return &TrustError{Path: path, Problem: fmt.Sprintf("mode %04o gives group or others access", perm),
			Fix: fmt.Sprintf("chmod 600 %q", path)}
	}
	if perm&0o022 != 0 {
		return &TrustError{Path: path, Problem: fmt.Sprintf("mode %04o is writable by group or others", perm),
			Fix: fmt.Sprintf("chmod go-w %q", path)}
	}
	if r.MaxSize > 0 && fi.Size() > r.MaxSize {
		return tooLarge(path, r.MaxSize)
	}
	return nil
}

func checkFolder(dir string, r TrustRule) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat folder of trusted file: %w", err)
	}
	if err := checkOwner(dir, fi, r, "folder"); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &TrustError{Path: dir, Problem: fmt.Sprintf("folder mode %04o is writable by group or others", perm),
			Fix: fmt.Sprintf("chmod go-w %q", dir)}
	}
	return nil
}

func checkOwner(path string, fi fs.FileInfo, r TrustRule, what string) error {
	uid, err := ownerOf(fi)
	if err != nil {
		return fmt.Errorf("check owner of %s: %w", path, err)
	}
	for _, o := range r.Owners {
		if o == uid {
			return nil
		}
	}
	return &TrustError{Path: path, Problem: fmt.Sprintf("%s owned by uid %d, not by an allowed owner %v", what, uid, r.Owners),
		Fix: fmt.Sprintf("chown root %q (or run the agent as uid %d)", path, uid)}
}

// checkResolvedSame makes sure the descriptor opened is still the file the
// path resolves to, so a symlink swapped mid-check is refused.
func checkResolvedSame(target string, fi fs.FileInfo) error {
	again, err := os.Stat(target)
	if err != nil || !os.SameFile(fi, again) {
		return &TrustError{Path: target, Problem: "file changed while it was being checked",
			Fix: "retry; if it persists, find what rewrites the file"}
	}
	return nil
}

func readLimited(f *os.File, path string, max int64) ([]byte, error) {
	var rd io.Reader = f
	if max > 0 {
		rd = io.LimitReader(f, max+1)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read trusted file: %w", err)
	}
	if max > 0 && int64(len(data)) > max {
		clear(data)
		return nil, tooLarge(path, max)
	}
	return data, nil
}

func tooLarge(path string, max int64) error {
	return &TrustError{Path: path, Problem: fmt.Sprintf("larger than the %d-byte limit", max),
		Fix: "remove unused entries from the payload"}
}
