package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main instead of the tests when INTERLOCK_TEST_RUN_MAIN is
// set, so TestExitCodes can run the binary as a process.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("INTERLOCK_TEST_RUN_MAIN"); ok {
		os.Args = append([]string{"interlock"}, strings.Fields(args)...)
		main()
		return
	}
	os.Exit(m.Run())
}

// TestExitCodes runs the binary: 0 for help, 2 for a bad command line, 1
// for a failure, each message on stderr once prefixed and without the
// secrets of the environment.
func TestExitCodes(t *testing.T) {
	const secret = "exit-Sekr1t-3301"
	cases := []struct {
		args   string
		code   int
		stderr string
	}{
		{"help", 0, ""},
		{"topics verify -h", 0, "usage: interlock topics verify"},
		{"", 2, "interlock: no command given"},
		{"frobnicate", 2, `interlock: unknown command "frobnicate"`},
		{"aggregate show bank-account", 2, "takes TYPE ID"},
		{"topics verify", 2, "needs --brokers"},
		{"schema check", 1, "interlock: checking schemas needs brokers"},
	}
	for _, c := range cases {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "INTERLOCK_TEST_RUN_MAIN="+c.args, "INTERLOCK_SASL_PASSWORD="+secret, "INTERLOCK_POSTGRES_DSN=postgres://u:"+secret+"@localhost:1/db")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) || strings.Contains(stderr.String(), secret) ||
			strings.Contains(stderr.String(), "interlock: interlock:") {
			t.Errorf("interlock %s: exit %d, want %d; stderr:\n%s", c.args, code, c.code, stderr.String())
		}
	}
}
