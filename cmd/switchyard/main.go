// Command switchyard runs the switchyard building blocks: the gateway (L7
// load balancer and API gateway), the message broker, the load generator, and
// a self-contained demo.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/switchyard/switchyard/internal/flaghint"
)

// command is one subcommand. run gets the arguments after the subcommand
// name; it returns errUsage (after printing usage) for bad flags.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// errUsage marks an error already reported with usage text; main exits 2.
var errUsage = errors.New("usage")

// exitError ends the command with a specific exit status. Its message, if
// any, is printed like any other error.
type exitError struct {
	code int
	err  error // nil: nothing more to print
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func commands() map[string]command {
	return map[string]command{
		"gateway":  {"run the L7 load balancer / API gateway from a YAML config", runGateway},
		"edge":     {"purge, push, inspect and count a gateway's edge caches (admin API client)", runEdge},
		"rollout":  {"canary, blue-green and A/B rollouts of an upstream's targets (admin API client)", runRollout},
		"demo":     {"start three demo backends and a gateway in front of them (no setup)", runDemo},
		"load":     {"open-model HTTP load generator with HDR percentiles and degradation search", runLoad},
		"broker":   {"run the message broker (queues, topics, streams)", runBroker},
		"registry": {"run the service registry (registration, heartbeats, discovery)", runRegistry},
		"outbox":   {"list, redrive or discard the messages a kit/outbox relay parked (too large for the broker)", runOutbox},
		"dns":      {"run the authoritative DNS server and GSLB (health, geo, latency steering)", runDNS},
		"sidecar":  {"run beside an app: register and health-check it, serve its traffic, outbound ambassador port", runSidecar},
		"chaos":    {"fault injection: a TCP fault proxy with an HTTP API; chaos run FILE runs an experiment", runChaos},
		"hitch":    {"run Hitch, the ride-sharing example: hitch up (everything), hitch serve NAME (one service)", runHitch},
		"slo":      {"SLOs: write a gateway config's SLOs as Prometheus recording and alerting rules", runSLO},
		"version":  {"print the version", runVersion},
	}
}

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise it comes from the module version in the build info.
var version = ""

// versionLine returns "switchyard VERSION (commit C[, modified], goX.Y.Z)"
// from the build information the Go toolchain embeds in the binary.
func versionLine() string {
	v, commit, modified, goVersion := version, "unknown", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if modified {
		commit += ", modified"
	}
	return fmt.Sprintf("switchyard %s (commit %s, %s)", v, commit, goVersion)
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, versionLine())
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "switchyard: the building blocks of a large-scale system, in one binary.")
	fmt.Fprintln(w, "\nUsage: switchyard <command> [flags]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'switchyard <command> --help' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		names := make([]string, 0, len(commands()))
		for n := range commands() {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(stderr, "switchyard: unknown command %q", args[0])
		if s := flaghint.Closest(args[0], names); s != "" {
			fmt.Fprintf(stderr, ": did you mean %q?", s)
		}
		fmt.Fprint(stderr, "\n\n")
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout, stderr)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(stderr, "switchyard %s: %v\n", args[0], ee.err)
		}
		return ee.code
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "switchyard %s: %v\n", args[0], err)
		return 1
	}
}

// newFlagSet returns a flag set with a one-line description in its usage,
// which reports errors instead of exiting. Its usage goes to stderr after
// a flag error, and to stdout when --help asked for it (see parseFlags).
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("switchyard "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: switchyard %s %s\n\n%s\n\nFlags:\n", name, synopsis, description)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping flag errors to errUsage and -h to
// flag.ErrHelp. What the flag package prints is held until the outcome
// is known: the usage asked for with --help goes to stdout (exit 0), a
// flag error and its usage to the flag set's output (stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		out = stdout
	}
	out.Write(flaghint.Annotate(fs, err, buf.Bytes()))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return nil
}
