package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
)

// headerFlag collects repeated --header NAME=VALUE (or NAME:VALUE).
type headerFlag map[string]string

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(s string) error {
	i := strings.IndexAny(s, "=:")
	if i <= 0 {
		return fmt.Errorf("%q: want NAME=VALUE", s)
	}
	h[strings.ToLower(strings.TrimSpace(s[:i]))] = strings.TrimSpace(s[i+1:])
	return nil
}

// pubOpts are the flags of publish, publish-topic and append.
type pubOpts struct {
	id, key    string
	delay, ttl time.Duration
	headers    headerFlag
	lines      bool
}

func messageFlags(fs *flag.FlagSet, e *env, queueOnly bool) {
	e.pub.headers = headerFlag{}
	o := &e.pub
	fs.Var(o.headers, "header", "message header `NAME=VALUE` (repeatable)")
	fs.BoolVar(&o.lines, "lines", false, "read stdin as one message per line (empty lines skipped)")
	if queueOnly {
		fs.StringVar(&o.id, "id", "", "producer message `id`: a repeat within the queue's dedup window is not stored again")
		fs.StringVar(&o.key, "key", "", "ordering `key`: messages with the same key are delivered in order, one at a time")
		durationVar(fs, &o.delay, "delay", 0, "deliver after this `duration`")
		durationVar(fs, &o.ttl, "ttl", 0, "dead-letter the message if not consumed within this `duration`")
	}
}

func publishFlags(fs *flag.FlagSet, e *env) { messageFlags(fs, e, true) }
func appendFlags(fs *flag.FlagSet, e *env)  { messageFlags(fs, e, false) }

// bodies returns the message bodies: the argument, else stdin (whole,
// or one per line with --lines).
func (e *env) bodies(fs *flag.FlagSet, args []string, o *pubOpts) ([][]byte, error) {
	if len(args) > 2 {
		return nil, e.usageErr(fs, "too many arguments: quote a BODY with spaces")
	}
	if len(args) == 2 {
		if o.lines {
			return nil, e.usageErr(fs, "--lines reads stdin: give no BODY argument")
		}
		return [][]byte{[]byte(args[1])}, nil
	}
	if f, ok := e.stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			e.note("reading the message from the terminal; end it with Ctrl-D")
		}
	}
	if !o.lines {
		data, err := io.ReadAll(io.LimitReader(e.stdin, 64<<20+1))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		if len(data) > 64<<20 {
			return nil, errors.New("stdin: message larger than 64 MiB, the broker's largest")
		}
		return [][]byte{data}, nil
	}
	var out [][]byte
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			out = append(out, bytes.Clone(sc.Bytes()))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	return out, nil
}

func (o *pubOpts) message(body []byte) broker.Message {
	m := broker.Message{ID: o.id, Key: o.key, Delay: o.delay, TTL: o.ttl, Body: body}
	if len(o.headers) > 0 {
		m.Headers = o.headers
	}
	return m
}

func runPublish(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) < 1 {
		return e.usageErr(fs, "missing QUEUE")
	}
	o := &e.pub
	bodies, err := e.bodies(fs, args, o)
	if err != nil {
		return err
	}
	if o.id != "" && len(bodies) > 1 {
		return e.usageErr(fs, "--id names one message; with --lines each line needs its own (leave --id out)")
	}
	for _, body := range bodies {
		ctx, cancel := e.reqCtx(0)
		res, err := e.h.Publish(ctx, args[0], o.message(body))
		cancel()
		if err != nil {
			return err
		}
		id := strconv.FormatUint(res[0].Seq, 10)
		if e.json {
			e.printJSON(map[string]any{"queue": args[0], "id": id, "duplicate": res[0].Duplicate})
		} else if res[0].Duplicate {
			fmt.Fprintf(e.stdout, "duplicate of message %s in queue %s (msg id %q seen within the dedup window): not stored again\n", id, args[0], o.id)
		} else {
			fmt.Fprintf(e.stdout, "published message %s to queue %s (%d bytes)\n", id, args[0], len(body))
		}
	}
	return nil
}

type receiveOpts struct {
	max       int
	wait, vis time.Duration
	ack, auto bool
}

func receiveFlags(fs *flag.FlagSet, e *env) {
	o := &e.recv
	fs.IntVar(&o.max, "max", 1, "receive up to `n` messages (1..1000)")
	durationVar(fs, &o.wait, "wait", 0, "wait up to this `duration` (at most 60s) for the first message")
	durationVar(fs, &o.vis, "visibility", 0, "keep the messages invisible to other consumers this `duration` (default: the queue's visibility_timeout)")
	fs.BoolVar(&o.ack, "ack", false, "acknowledge the messages once printed")
	fs.BoolVar(&o.auto, "auto-ack", false, "acknowledge on delivery, in the broker (at-most-once)")
}

func runReceive(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return e.usageErr(fs, "want exactly one QUEUE")
	}
	o := &e.recv
	if o.max < 1 || o.max > 1000 {
		return e.usageErr(fs, "--max %d: want 1..1000", o.max)
	}
	if o.wait < 0 || o.wait > 60*time.Second {
		return e.usageErr(fs, "--wait %s: want 0..60s", o.wait)
	}
	queue := args[0]
	ctx, cancel := e.reqCtx(o.wait)
	defer cancel()
	ds, err := e.h.Receive(ctx, queue, broker.ReceiveOptions{Max: o.max, Wait: o.wait, Visibility: o.vis, AutoAck: o.auto})
	if err != nil {
		return err
	}
	receipts := make([]string, 0, len(ds))
	for _, d := range ds {
		m := newMessage(d.Body)
		m.Queue, m.ID, m.Receipt, m.Deliveries = queue, strconv.FormatUint(d.Seq, 10), d.Receipt, d.Deliveries
		m.MsgID, m.Key, m.Time, m.Headers = d.MsgID, d.Key, d.PublishedAt, d.Headers
		if o.auto {
			m.Receipt = ""
		}
		e.printMessage(m)
		receipts = append(receipts, d.Receipt)
	}
	if len(ds) == 0 {
		if !e.json {
			e.note("no messages in queue %s", queue)
		}
		return nil
	}
	if !o.ack || o.auto {
		return nil
	}
	res, err := e.h.Ack(ctx, queue, receipts...)
	if err != nil {
		return fmt.Errorf("acking the messages received: %w", err)
	}
	return e.settled("ack", queue, res, true)
}

// settled reports an ack or nack answer: failed receipts are an error.
func (e *env) settled(op, queue string, res broker.AckResult, quiet bool) error {
	if e.json && !quiet {
		e.printJSON(map[string]any{"queue": queue, "done": res.Done, "failed": res.Failed})
	} else if !e.json {
		verb := map[string]string{"ack": "acked", "nack": "nacked"}[op]
		e.note("%s %s in queue %s", verb, plural(res.Done, "message", "messages"), queue)
	}
	if len(res.Failed) == 0 {
		return nil
	}
	var b strings.Builder
	for _, f := range res.Failed {
		fmt.Fprintf(&b, "\n  receipt %s: %s", f.Receipt, f.Error)
	}
	return fmt.Errorf("%s of %d in queue %s failed:%s", plural(len(res.Failed), "receipt", "receipts"), res.Done+len(res.Failed), queue, b.String())
}

func nackFlags(fs *flag.FlagSet, e *env) {
	durationVar(fs, &e.nackDelay, "delay", 0, "redeliver after this `duration`")
}

func runAck(e *env, fs *flag.FlagSet, args []string) error  { return e.settle(fs, args, "ack") }
func runNack(e *env, fs *flag.FlagSet, args []string) error { return e.settle(fs, args, "nack") }

// settle acks or nacks receipts from the arguments or stdin. Lines of
// stdin are receipts, or the JSON objects `receive --json` prints (their
// queue is used when no QUEUE is given). Empty input settles nothing.
func (e *env) settle(fs *flag.FlagSet, args []string, op string) error {
	var queue string
	if len(args) > 0 {
		queue = args[0]
	}
	byQueue := map[string][]string{}
	var order []string
	add := func(q, r string) {
		if _, ok := byQueue[q]; !ok {
			order = append(order, q)
		}
		byQueue[q] = append(byQueue[q], r)
	}
	if len(args) > 1 {
		for _, r := range args[1:] {
			add(queue, r)
		}
	} else {
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 64*1024), 128<<20)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			q, r := queue, line
			if strings.HasPrefix(line, "{") {
				var m struct {
					Queue   string `json:"queue"`
					Receipt string `json:"receipt"`
				}
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					return e.usageErr(fs, "stdin line %d: not a receipt nor a JSON message: %v", n, err)
				}
				if m.Receipt == "" {
					return e.usageErr(fs, "stdin line %d: JSON without a receipt (received with --auto-ack or --ack?)", n)
				}
				r = m.Receipt
				switch {
				case q == "":
					q = m.Queue
				case m.Queue != "" && m.Queue != q:
					return e.usageErr(fs, "stdin line %d: message of queue %q, not %q", n, m.Queue, q)
				}
			}
			if q == "" {
				return e.usageErr(fs, "stdin line %d: receipt %q without a queue: give QUEUE", n, line)
			}
			add(q, r)
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
	if len(order) == 0 {
		// Nothing came in: an empty pipeline is not an error.
		if !e.json {
			e.note("nothing to %s: no receipts given", op)
		}
		return nil
	}
	var errs []error
	for _, q := range order {
		ctx, cancel := e.reqCtx(0)
		var res broker.AckResult
		var err error
		if op == "ack" {
			res, err = e.h.Ack(ctx, q, byQueue[q]...)
		} else {
			res, err = e.h.Nack(ctx, q, e.nackDelay, byQueue[q]...)
		}
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := e.settled(op, q, res, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runRedrive(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return e.usageErr(fs, "want exactly one QUEUE (the source queue, not its .dlq)")
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	n, err := e.h.Redrive(ctx, args[0])
	var kept *broker.RedriveKeptError
	if err != nil && !errors.As(err, &kept) {
		return err
	}
	if e.json {
		ans := map[string]any{"queue": args[0], "moved": n}
		if kept != nil {
			ans["kept"], ans["first_kept"] = kept.Kept, kept.First
		}
		e.printJSON(ans)
	} else {
		fmt.Fprintf(e.stdout, "moved %s from the dead-letter queue of %s back to their queues\n", plural(n, "message", "messages"), args[0])
	}
	if kept != nil {
		// The rest moved; exit non-zero so that a script sees what stayed.
		return err
	}
	return nil
}
