package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill Prometheus when the test binary dies without calling Stop
// (a panic, a -timeout), so no server outlives its tests.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
