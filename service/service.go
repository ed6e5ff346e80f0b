package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/bench"
)

// Build builds the user's application from the configuration: it creates
// the builder with cfg.Options() (and any options of its own), registers
// the aggregates, projections, hooks and middleware, and returns the
// builder, not built. Resources it opens (a database pool) are closed by
// functions it registers with cfg.Cleanup. It runs once per command.
type Build func(ctx context.Context, cfg *Config) (*interlock.Builder, error)

// Option configures Main and Run.
type Option interface{ apply(*runner) }

type optionFunc func(*runner)

func (f optionFunc) apply(r *runner) { f(r) }

// WithCommand adds a command of the binary's own, listed in the usage
// after the standard ones: run gets the arguments that follow name and
// parses its own flags. A command named like a standard one replaces it.
func WithCommand(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) Option {
	return optionFunc(func(r *runner) {
		r.extra = append(r.extra, extraCommand{name: name, summary: summary, run: run})
	})
}

// WithBench gives the bench command the workload it measures: the
// aggregate type, the command that sets up each aggregate, the command the
// timed phases send and, optionally, projectors (see package bench).
// Default: none, and bench fails with an error that names this option.
func WithBench(w bench.Workload) Option {
	return optionFunc(func(r *runner) { r.bench = &w })
}

// WithProgram sets the program name shown in the usage. Default: the base
// name of os.Args[0] (Main), "interlock" (Run).
func WithProgram(name string) Option {
	return optionFunc(func(r *runner) { r.prog = name })
}

type extraCommand struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// runner is one run of the binary.
type runner struct {
	prog           string
	build          Build
	extra          []extraCommand
	bench          *bench.Workload
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError is a command line that makes no sense: Main exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// ErrUsage is matched (errors.Is) by Run's errors about the command line
// itself: an unknown command, a missing argument, a bad flag.
var ErrUsage = errors.New("usage")

func (e *usageError) Is(target error) bool { return target == ErrUsage }

// Main runs the command named by os.Args with the application build
// returns, until it ends or the process gets SIGINT or SIGTERM, then exits:
// 0 on success, 2 for a bad command line, 1 for any other error (printed
// on stderr without secrets). Call it from main:
//
//	func main() { service.Main(build) }
func Main(build Build, opts ...Option) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	prog := filepath.Base(os.Args[0])
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr, build, append([]Option{WithProgram(prog)}, opts...)...)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(os.Stderr, prefixed(prog, err))
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, prefixed(prog, err))
		os.Exit(1)
	}
}

// prefixed returns err's message after the program's name, once: the
// interlock binary's errors often start with it already.
func prefixed(prog string, err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, prog+": ") {
		return msg
	}
	return prog + ": " + msg
}

// Run runs the command args name (args excludes the program name),
// writing its output to stdout and its logs to stderr, and returns when it
// is done or ctx ends (serve drains then). Errors say what went wrong
// without secrets; those about the command line match ErrUsage, and
// "-h" returns flag.ErrHelp after printing the usage. Main is Run with the
// process's arguments, signals and exit codes.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, build Build, opts ...Option) error {
	r := &runner{prog: "interlock", build: build, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	for _, o := range opts {
		o.apply(r)
	}
	return r.run(ctx, args)
}

func (r *runner) run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		r.usage(r.stderr)
		return &usageError{"no command given"}
	}
	switch args[0] {
	case "-h", "--help", "help":
		r.usage(r.stdout)
		return nil
	}
	for _, x := range r.extra {
		if x.name == args[0] {
			return x.run(ctx, args[1:], r.stdout, r.stderr)
		}
	}
	if args[0] == "bench" {
		return r.runBench(ctx, args[1:])
	}
	var cmd *command
	n := 0
	for _, c := range commands {
		words := strings.Fields(c.path)
		if len(words) <= len(args) && slices.Equal(words, args[:len(words)]) && len(words) > n {
			cmd, n = c, len(words)
		}
	}
	if cmd == nil {
		var subs []string
		for _, c := range commands {
			if rest, ok := strings.CutPrefix(c.path, args[0]+" "); ok {
				subs = append(subs, rest)
			}
		}
		if len(subs) > 0 {
			return &usageError{fmt.Sprintf("%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))}
		}
		r.usage(r.stderr)
		return &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return r.runCommand(ctx, cmd, args[n:])
}

// runCommand parses cmd's flags and arguments, resolves the configuration
// and runs it.
func (r *runner) runCommand(ctx context.Context, cmd *command, args []string) error {
	fs := flag.NewFlagSet(r.prog+" "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(r.stderr)
	vals := addFlags(fs, cmd.path == "serve")
	inv := &invocation{runner: r, cmd: cmd}
	if cmd.flags != nil {
		cmd.flags(fs, inv)
	}
	fs.Usage = func() { r.commandUsage(fs, cmd) }
	// Flags may follow the arguments: parse again after each one.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		inv.args = append(inv.args, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(inv.args) < cmd.minArgs || len(inv.args) > cmd.maxArgs {
		want := cmd.args
		if want == "" {
			want = "no arguments"
		}
		return &usageError{fmt.Sprintf("%s %s takes %s, got %q (see -h)", r.prog, cmd.path, want, inv.args)}
	}
	cfg, err := resolve(fs, vals, r.getenv, r.stderr)
	if err != nil {
		return &usageError{err.Error()}
	}
	inv.cfg = cfg
	defer cfg.close()
	return cfg.redact(cmd.run(ctx, inv))
}

// commandUsage prints a command's usage: its own flags, then the
// settings in the order of the configuration table.
func (r *runner) commandUsage(fs *flag.FlagSet, cmd *command) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: %s\n\n%s\n", strings.TrimSpace(r.prog+" "+cmd.path+" [flags] "+cmd.args), cmd.summary)
	isSetting := map[string]bool{}
	for _, s := range settings {
		isSetting[s.flag] = true
	}
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !isSetting[f.Name] {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nflags:")
		for _, f := range own {
			arg, help := flag.UnquoteUsage(f)
			printFlag(w, f.Name, arg, f.DefValue, help)
		}
	}
	fmt.Fprintln(w, "\nsettings (a flag, else its INTERLOCK_* variable, else the --config file):")
	for _, s := range settings {
		if f := fs.Lookup(s.flag); f != nil {
			printFlag(w, s.flag, s.arg, f.DefValue, f.Usage)
		}
	}
}

func printFlag(w io.Writer, name, arg, def, help string) {
	fmt.Fprintf(w, "  --%s", name)
	if arg != "" {
		fmt.Fprintf(w, " %s", arg)
	}
	if def != "" && def != "false" && def != "0" {
		fmt.Fprintf(w, "  (default %s)", def)
	}
	fmt.Fprintf(w, "\n        %s\n", help)
}

// usage prints the commands.
func (r *runner) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [flags] [arguments]\n\ncommands:\n", r.prog)
	tw := newTable(w)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.path, c.args, firstLine(c.summary))
	}
	benchReplaced := false
	for _, x := range r.extra {
		benchReplaced = benchReplaced || x.name == "bench"
	}
	if !benchReplaced {
		fmt.Fprintf(tw, "  bench\t%s\n", benchSummary)
	}
	for _, x := range r.extra {
		fmt.Fprintf(tw, "  %s\t%s\n", x.name, x.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags; settings come from flags, INTERLOCK_* variables\nand a YAML file (--config), in that order.\n", r.prog)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// command is one standard subcommand.
type command struct {
	// path is the command's words: "topics create".
	path string
	// args describes the positional arguments, minArgs and maxArgs bound
	// their number.
	args             string
	minArgs, maxArgs int
	summary          string
	// flags registers the command's own flags.
	flags func(fs *flag.FlagSet, inv *invocation)
	run   func(ctx context.Context, inv *invocation) error
}

// invocation is one command being run: its configuration, arguments and
// output.
type invocation struct {
	*runner
	cmd  *command
	cfg  *Config
	args []string
	// flag values of the commands
	json, follow                bool
	offset                      int64
	since, aggregate, id, types string
	live                        bool
	addr                        string
	timeout                     time.Duration
}

// app builds the user's application with the configuration's options
// (and extra, which win).
func (inv *invocation) app(ctx context.Context, extra ...interlock.Option) (*interlock.App, error) {
	inv.cfg.opts = append(inv.cfg.opts, extra...)
	b, err := inv.build(ctx, inv.cfg)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("the build function returned no builder")
	}
	return b.Build()
}

// offline builds the application for a command that reads or changes the
// cluster without starting it: it needs brokers.
func (inv *invocation) offline(ctx context.Context) (*interlock.App, error) {
	if len(inv.cfg.Brokers) == 0 {
		return nil, &usageError{fmt.Sprintf("%s needs --brokers (or INTERLOCK_BROKERS): an embedded Kafka has nothing to show once its process ends", inv.cmd.path)}
	}
	return inv.app(ctx)
}

const benchSummary = "measure the application's commands, latency and restores against the broker's limit (WithBench)"

// runBench runs the bench of the workload given WithBench: it has flags of
// its own (its --brokers, say), not the settings of the other commands,
// but connects to --brokers with the Kafka TLS and SASL settings of the
// environment and the configuration file (INTERLOCK_TLS_CA_FILE,
// INTERLOCK_SASL_MECHANISM, ...), as the service would.
func (r *runner) runBench(ctx context.Context, args []string) error {
	if r.bench == nil {
		return fmt.Errorf("bench: %s has no workload to measure: give its service.Main the option service.WithBench(bench.Workload{...}) with the aggregate and commands to send", r.prog)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg, err := resolve(fs, addFlags(fs, false), r.getenv, r.stderr) // no flag parsed: the environment and the file
	if err != nil {
		return fmt.Errorf("bench: the Kafka settings of the environment: %w", err)
	}
	return cfg.redact(bench.Run(ctx, *r.bench, args, r.stdout, r.stderr, bench.WithClientOptions(cfg.kafka...)))
}
