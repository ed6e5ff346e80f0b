package securekafka

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the broker die with the test binary, so a test
// killed by its timeout leaves no Kafka behind holding ports.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
