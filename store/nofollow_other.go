//go:build !unix

package store

// syscallNoFollow is 0 where O_NOFOLLOW does not exist; the mode check still applies.
const syscallNoFollow = 0
