package platform

import (
	"fmt"
	"net"
	"syscall"
)

// Peer is the identity of the process at the other end of a Unix socket, as
// the kernel reports it at connect time.
type Peer struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
	PID int `json:"pid"` // 0 when the system does not report it
}

// PeerOf returns the credentials of the peer of a Unix-socket connection:
// SO_PEERCRED on Linux, LOCAL_PEERCRED (and LOCAL_PEERPID) on macOS. Other
// systems return ErrUnsupported; a connection that is not a Unix socket is an
// error.
func PeerOf(c net.Conn) (Peer, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Peer{}, fmt.Errorf("read peer credentials: %T is not a socket connection", c)
	}
	if _, ok := c.LocalAddr().(*net.UnixAddr); !ok {
		return Peer{}, fmt.Errorf("read peer credentials: %s is not a Unix socket", c.LocalAddr().Network())
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("read peer credentials: %w", err)
	}
	var p Peer
	var perr error
	if err := raw.Control(func(fd uintptr) { p, perr = peerOfFD(int(fd)) }); err != nil {
		return Peer{}, fmt.Errorf("read peer credentials: %w", err)
	}
	if perr != nil {
		return Peer{}, fmt.Errorf("read peer credentials: %w", perr)
	}
	return p, nil
}
