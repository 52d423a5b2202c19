//go:build race

package store_test

// raceEnabled: the race detector slows SQLite (transpiled C) about tenfold,
// so the long tests do less work per step (never fewer kills or checks of
// invariants).
const raceEnabled = true
