package platform

import "golang.org/x/sys/unix"

func peerOfFD(fd int) (Peer, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{UID: int(cred.Uid), GID: -1}
	if cred.Ngroups > 0 {
		p.GID = int(cred.Groups[0]) // the effective gid comes first
	}
	// LOCAL_PEERPID exists since macOS 10.8; a failure leaves PID 0.
	if pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err == nil {
		p.PID = pid
	}
	return p, nil
}
