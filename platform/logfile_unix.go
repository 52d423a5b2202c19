//go:build unix

package platform

import "golang.org/x/sys/unix"

const oNoFollow = unix.O_NOFOLLOW
