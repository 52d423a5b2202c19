//go:build linux || darwin

package platform

import "golang.org/x/sys/unix"

func noEchoWith(fd int, get, set uint) (func() error, error) {
	old, err := unix.IoctlGetTermios(fd, get)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, set, &t); err != nil {
		return nil, err
	}
	return func() error { return unix.IoctlSetTermios(fd, set, old) }, nil
}
