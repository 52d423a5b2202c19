//go:build !linux

package soak

import "os/exec"

// dieWithParent: only Linux can tie a child's life to its parent's; elsewhere
// an interrupted test may leave the agent process to be killed by hand.
func dieWithParent(*exec.Cmd) {}
