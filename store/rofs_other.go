//go:build !unix

package store

// writableFS cannot tell a read-only filesystem apart here; SQLite's own
// error then reports it.
func writableFS(string) error { return nil }
