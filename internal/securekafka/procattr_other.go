//go:build !linux

package securekafka

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: the test's cleanup stops the broker.
func dieWithParent(*exec.Cmd) {}
