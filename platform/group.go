package platform

import (
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// UserInGroup reports whether the user with uid belongs to group, as its
// primary group or a supplementary one. A group or user that does not exist is
// not an error: the answer is false.
//
// It relies on os/user, which works without cgo on both systems rekey
// supports: on macOS (even with CGO_ENABLED=0) the standard library calls
// libSystem's getpwuid_r, getgrnam_r and getgrouplist directly, so directory
// service (Open Directory) users and groups such as "admin" are seen; on Linux
// without cgo it reads /etc/passwd and /etc/group (NSS sources such as LDAP
// are then not consulted; build with cgo for those).
func UserInGroup(uid int, group string) (bool, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return false, nil
		}
		return false, fmt.Errorf("look up group %q: %w", group, err)
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return false, nil
		}
		return false, fmt.Errorf("look up user %d: %w", uid, err)
	}
	if u.Gid == g.Gid {
		return true, nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return false, fmt.Errorf("list groups of user %s: %w", u.Username, err)
	}
	return slices.Contains(ids, g.Gid), nil
}
