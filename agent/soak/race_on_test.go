//go:build race

package soak

// raceEnabled: under the race detector SQLite (transpiled C) and scrypt run
// about ten times slower, so the default counts inside `make test` shrink
// to stay within seconds; `make soak` sets its own counts.
const raceEnabled = true
