//go:build !linux

package testenv

import "os/exec"

// setProcAttr does nothing where there is no parent-death signal; Stop still kills Prometheus.
func setProcAttr(*exec.Cmd) {}
