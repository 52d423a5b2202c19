package platform

import "golang.org/x/sys/unix"

func noEcho(fd int) (func() error, error) { return noEchoWith(fd, unix.TCGETS, unix.TCSETS) }
