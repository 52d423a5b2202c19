//go:build unix

package store

import "syscall"

// syscallNoFollow refuses to open the sealing key through a symlink.
const syscallNoFollow = syscall.O_NOFOLLOW
