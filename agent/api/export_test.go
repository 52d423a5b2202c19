package api

import "time"

// SetReadTimeout lets tests shorten the server's read timeout.
func SetReadTimeout(s *Server, d time.Duration) { s.http.ReadTimeout = d }

// ConnLimits exposes the connection accounting of a server with these limits.
func ConnLimits(maxConns, reserved, perUID int, privileged func(int) bool) (acquire, release func(uid int) bool) {
	l := &connLimiter{max: maxConns, reserved: reserved, perUID: perUID, privileged: privileged}
	return l.acquire, func(uid int) bool { l.release(uid); return true }
}
