package api

import "time"

// SetReadTimeout lets tests shorten the server's read timeout.
func SetReadTimeout(s *Server, d time.Duration) { s.http.ReadTimeout = d }
