// Package cli is the command-line client of the broker: the
// `switchyard broker SUBCOMMAND` commands (publish, receive, ack, tail,
// read, ls, ...) that talk to a running broker over its HTTP API through
// package broker/client.
//
// Output is human-readable by default; --json prints one JSON object per
// line (one per message for commands that print messages), for scripts and
// pipelines such as `receive --json | ack`. Exit status: 0 success, 1 the
// broker refused or could not be reached, 2 usage errors.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/flaghint"
)

// DefaultServer is the broker's default --http address.
const DefaultServer = "127.0.0.1:7401"

// EnvServer names the environment variable that overrides DefaultServer.
const EnvServer = "SWITCHYARD_BROKER"

// ErrUsage marks a usage error, already reported with the command's usage
// on stderr (exit status 2).
var ErrUsage = errors.New("usage")

// command is one client subcommand.
type command struct {
	args    string // synopsis after the name
	summary string
	run     func(e *env, fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet, e *env) // extra flags, before parsing
}

var commands map[string]*command

func init() {
	commands = map[string]*command{
		"publish":       {"QUEUE [BODY]", "publish a message to a queue (BODY, else stdin)", runPublish, publishFlags},
		"receive":       {"QUEUE", "receive messages from a queue (they stay in flight until acked)", runReceive, receiveFlags},
		"ack":           {"[QUEUE] [RECEIPT...]", "acknowledge receipts (from the arguments, else stdin: receipts or receive --json lines)", runAck, nil},
		"nack":          {"[QUEUE] [RECEIPT...]", "return receipts to their queue for redelivery (like ack)", runNack, nackFlags},
		"tail":          {"TOPIC", "follow a topic: print messages published from now on", runTail, tailFlags},
		"publish-topic": {"TOPIC [BODY]", "publish a message to a topic (BODY, else stdin)", runPublishTopic, publishFlags},
		"append":        {"STREAM [BODY]", "append a message to a stream (BODY, else stdin)", runAppend, appendFlags},
		"read":          {"STREAM", "read a stream from an offset, or as a consumer group", runRead, readFlags},
		"ls":            {"[queues|topics|streams]", "list queues, topics and streams with their counts", runLs, nil},
		"info":          {"[queue|topic|stream] NAME", "show the settings and counts of a queue, topic or stream", runInfo, nil},
		"declare":       {"queue|topic|stream NAME [SETTING=VALUE...]", "create a queue, topic or stream, or replace its settings (--if-absent: leave an existing one untouched)", runDeclare, declareFlags},
		"delete":        {"queue|topic|stream NAME", "delete a queue, topic or stream and its messages", runDelete, nil},
		"bind":          {"TOPIC QUEUE", "bind a queue to a topic (the topic's messages also go to it), keeping its other bindings", runBind, bindFlags},
		"unbind":        {"TOPIC QUEUE", "unbind a queue from a topic (the queue and its messages stay)", runUnbind, nil},
		"redrive":       {"QUEUE", "move the messages of QUEUE's dead-letter queue back to their queues", runRedrive, nil},
		"status":        {"[QUEUE ID]", "check that the broker answers; with QUEUE ID, the state of one message", runStatus, nil},
	}
}

// IsCommand reports whether name is a client subcommand (or "help"), so
// that `switchyard broker NAME ...` runs the client and any other first
// argument runs the broker server.
func IsCommand(name string) bool {
	_, ok := commands[name]
	return ok || name == "help"
}

// Suggest returns the client subcommand name is probably a typo of
// ("pubish": "publish"), or "".
func Suggest(name string) string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return config.Closest(name, names)
}

// Usage prints the list of client subcommands.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: switchyard broker COMMAND [flags] [args]   (client of a running broker)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nEvery command takes --server ADDR (default $%s or %s), --json\n", EnvServer, DefaultServer)
	fmt.Fprintln(w, "(one JSON object per line) and --timeout. 'switchyard broker COMMAND --help' shows its flags.")
	fmt.Fprintf(w, "A broker with users: $%s, or $%s and $%s (or --user, --password-file,\n", EnvToken, EnvUser, EnvPassword)
	fmt.Fprintln(w, "--token-file); https:// servers: --tls-ca, --tls-cert, --tls-key.")
	fmt.Fprintln(w, "Exit status: 0 ok, 1 the broker refused or could not be reached, 2 usage error.")
	fmt.Fprintln(w, "\nThe broker itself: switchyard broker --data DIR [flags] ('switchyard broker --help');")
	fmt.Fprintln(w, "repair a stopped broker's log: switchyard broker repair --data DIR.")
}

// env is what a command runs with.
type env struct {
	ctx     context.Context
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	server  string // as given
	base    string // http://host:port
	json    bool
	timeout time.Duration
	h       *client.HTTP
	sec     securityOpts

	// Options of the command that runs.
	pub       pubOpts
	recv      receiveOpts
	nackDelay time.Duration
	read      readOpts
	tailCount int
	bindNew   bool
	ifAbsent  bool // declare --if-absent
}

// Run runs the client subcommand args[0] with the arguments after it.
// It returns nil, an error wrapping ErrUsage (already reported with usage
// on stderr), flag.ErrHelp after --help, or the operation's error (not
// printed: the caller prints it and exits 1). ExitCode maps it.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				newFlags(args[1], c, &env{}, stdout).Usage()
				return nil
			}
		}
		Usage(stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "switchyard broker: unknown command %q\n\n", args[0])
		Usage(stderr)
		return ErrUsage
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := newFlags(args[0], c, e, stderr)
	pos, err := parseInterspersed(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if e.base, err = serverURL(e.server); err != nil {
		fmt.Fprintf(stderr, "switchyard broker %s: --server: %v\n", args[0], err)
		return ErrUsage
	}
	creds, tc, err := e.security()
	if err != nil {
		fmt.Fprintf(stderr, "switchyard broker %s: %v\n", args[0], err)
		return ErrUsage
	}
	hc := &http.Client{}
	if tc != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}
	}
	e.h = &client.HTTP{Base: e.base, Client: hc, Credentials: creds}
	defer e.h.Close()
	err = c.run(e, fs, pos)
	if err != nil && !errors.Is(err, ErrUsage) {
		err = e.notBroker(err)
		if len(pos) > 0 {
			err = e.otherKind(args[0], pos[0], err)
		}
		err = e.explain(err)
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return err
}

// ExitCode is the process exit status for an error Run returned.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

func newFlags(name string, c *command, e *env, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("switchyard broker "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: switchyard broker %s %s\n\n%s.\n\nFlags:\n", name, c.args, c.summary)
		fs.PrintDefaults()
	}
	def := os.Getenv(EnvServer)
	if def == "" {
		def = DefaultServer
	}
	fs.StringVar(&e.server, "server", def, "broker HTTP API `address` (host:port or http://host:port; env "+EnvServer+")")
	fs.BoolVar(&e.json, "json", false, "print JSON, one object per line")
	securityFlags(fs, e)
	durationVar(fs, &e.timeout, "timeout", 10*time.Second, "give up on the broker after this `duration` (beyond --wait)")
	if c.flags != nil {
		c.flags(fs, e)
	}
	return fs
}

// parseInterspersed parses flags wherever they are among the positional
// arguments (`publish orders hello --key k`); after "--" everything is
// positional. The usage --help asks for goes to stdout; flag errors and
// their usage to the flag set's output (stderr).
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	out := fs.Output()
	for {
		var buf bytes.Buffer
		fs.SetOutput(&buf)
		err := fs.Parse(args)
		fs.SetOutput(out)
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(buf.Bytes())
			return nil, flag.ErrHelp
		}
		out.Write(flaghint.Annotate(fs, err, buf.Bytes()))
		if err != nil {
			return nil, ErrUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// serverURL turns host:port or http(s)://host:port into a base URL.
func serverURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty address: want host:port or http(s)://host:port")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err == nil && u.Scheme == "switchyard" {
		return "", fmt.Errorf("%q is the broker's native (bus) port; this command talks to its HTTP API: give the broker's --http address as host:port or http(s)://host:port", s)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%q: want host:port or http(s)://host:port", s)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("%q: no port (the broker's default is %s)", s, DefaultServer)
	}
	return u.Scheme + "://" + u.Host, nil
}

// usageErr reports a usage problem of the command and returns ErrUsage.
func (e *env) usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return ErrUsage
}

// reqCtx bounds one request by --timeout beyond wait.
func (e *env) reqCtx(wait time.Duration) (context.Context, context.CancelFunc) {
	if e.timeout <= 0 {
		return context.WithCancel(e.ctx)
	}
	return context.WithTimeout(e.ctx, e.timeout+wait)
}

// notBroker turns a "not found" answer into client.ErrNotBroker when the
// server is not a broker at all (--server pointed at a gateway or its
// admin API, which answer 404 to every /v1 path): "queue not found" would
// send the user looking for a queue.
func (e *env) notBroker(err error) error {
	if !errors.Is(err, broker.ErrNotFound) || e.ctx.Err() != nil {
		return err
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	if herr := e.h.Health(ctx); errors.Is(herr, client.ErrNotBroker) {
		return herr
	}
	return err
}

// kindOf is the kind of name each command works on, and whether it
// reads (else writes); commandFor is the reading and writing command of
// each kind.
var (
	kindOf = map[string]struct {
		kind string
		read bool
	}{
		"publish": {"queue", false}, "receive": {"queue", true}, "redrive": {"queue", true},
		"publish-topic": {"topic", false}, "tail": {"topic", true},
		"append": {"stream", false}, "read": {"stream", true},
	}
	commandFor = map[string][2]string{ // kind: reading, writing
		"queue": {"receive", "publish"}, "topic": {"tail", "publish-topic"}, "stream": {"read", "append"},
	}
)

// otherKind adds to a "not found" of command cmd on name what name is when
// it is another kind, and the command that fits it (`receive rides` on a
// topic: "rides is a topic: switchyard broker tail rides").
func (e *env) otherKind(cmd, name string, err error) error {
	k, ok := kindOf[cmd]
	if !ok || !errors.Is(err, broker.ErrNotFound) || e.ctx.Err() != nil {
		return err
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	for _, kind := range []string{"queue", "topic", "stream"} {
		if kind == k.kind {
			continue
		}
		var ierr error
		switch kind {
		case "queue":
			_, ierr = e.h.QueueInfo(ctx, name)
		case "topic":
			_, ierr = e.h.TopicInfo(ctx, name)
		default:
			_, ierr = e.h.StreamInfo(ctx, name)
		}
		if ierr == nil {
			use := commandFor[kind][1]
			if k.read {
				use = commandFor[kind][0]
			}
			return fmt.Errorf("%w (%s is a %s: switchyard broker %s %s)", err, name, kind, use, name)
		}
	}
	return err
}

// explain words transport failures for a person: which address could not
// be reached, and why.
func (e *env) explain(err error) error {
	// The HTTP client reports a request's end as a disconnection with
	// the context's error as text.
	if e.ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		return fmt.Errorf("the broker at %s did not answer within --timeout %s", e.base, e.timeout)
	}
	if errors.Is(err, client.ErrNotBroker) {
		return fmt.Errorf("%w (is --server the broker's --http address? set --server or $%s)", err, EnvServer)
	}
	if !errors.Is(err, client.ErrDisconnected) {
		return err
	}
	var ne net.Error
	cause := err.Error()
	if errors.As(err, &ne) {
		cause = ne.Error()
	}
	// The transport's message ends with the reason: "dial tcp ...:
	// connect: connection refused".
	if i := strings.LastIndex(cause, ": "); i >= 0 {
		cause = cause[i+2:]
	}
	return fmt.Errorf("cannot reach the broker at %s: %s (is it running? set --server or $%s)", e.base, cause, EnvServer)
}
