package api

import (
	"net"
	"sync"

	"github.com/rekeyd/rekey/platform"
)

// Connection limits (see Config.MaxConns): a local user holding connections
// open must not take every file descriptor of the agent, nor lock root and
// the agent's own uid out of the API.
const (
	DefaultMaxConns       = 256
	DefaultMaxConnsPerUID = 32
)

// connLimiter counts open connections: at most max in all, of which the
// last reserved are for privileged uids only, and at most perUID for each
// other uid.
type connLimiter struct {
	max, reserved, perUID int
	privileged            func(uid int) bool

	mu     sync.Mutex
	total  int
	others int
	byUID  map[int]int
}

// acquire takes a slot for a connection of uid (-1: unknown), or reports false.
func (l *connLimiter) acquire(uid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return false
	}
	if uid < 0 || !l.privileged(uid) {
		if l.others >= l.max-l.reserved || l.byUID[uid] >= l.perUID {
			return false
		}
		if l.byUID == nil {
			l.byUID = make(map[int]int)
		}
		l.others++
		l.byUID[uid]++
	}
	l.total++
	return true
}

func (l *connLimiter) release(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if uid < 0 || !l.privileged(uid) {
		l.others--
		if l.byUID[uid]--; l.byUID[uid] <= 0 {
			delete(l.byUID, uid)
		}
	}
}

// limitListener reads each accepted connection's peer credentials and closes
// at once a connection over the limits of its uid.
type limitListener struct {
	net.Listener
	lim     *connLimiter
	peerOf  func(net.Conn) (platform.Peer, error)
	refused func(p platform.Peer)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p, perr := l.peerOf(c)
		uid := p.UID
		if perr != nil {
			p, uid = platform.Peer{UID: -1, GID: -1, PID: -1}, -1
		}
		if !l.lim.acquire(uid) {
			c.Close()
			l.refused(p)
			continue
		}
		return &limitedConn{Conn: c, peer: peerResult{p, perr}, release: func() { l.lim.release(uid) }}, nil
	}
}

// limitedConn frees its slot when closed, and carries the peer read at accept.
type limitedConn struct {
	net.Conn
	peer    peerResult
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
