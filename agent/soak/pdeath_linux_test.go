package soak

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the agent process die with the test binary, so an
// interrupted test leaves no agent running.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
