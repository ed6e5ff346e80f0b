// Command interlock runs Interlock's tools: demo, the bank example on an
// embedded Kafka (or a real one with --brokers), and serve, the example
// domains as a long-running service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: interlock <command> [flags]

commands:
  demo    run the bank example: commands, a rejection and a concurrent burst
          (on an embedded Kafka unless --brokers is given)
  serve   run the example domains as a service until SIGINT or SIGTERM
  bench   measure commands, latency and restores against the broker's own limit

Run 'interlock <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(ctx, os.Stdout, os.Args[2:])
	case "bench":
		err = bench(ctx, os.Stdout, os.Stderr, os.Args[2:])
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "interlock: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interlock:", err)
		os.Exit(1)
	}
}
