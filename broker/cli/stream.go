package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
)

func runPublishTopic(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) < 1 {
		return e.usageErr(fs, "missing TOPIC")
	}
	o := &e.pub
	bodies, err := e.bodies(fs, args, o)
	if err != nil {
		return err
	}
	for _, body := range bodies {
		ctx, cancel := e.reqCtx(0)
		res, err := e.h.PublishTopic(ctx, args[0], o.message(body))
		cancel()
		if err != nil {
			return err
		}
		r := res[0]
		if e.json {
			e.printJSON(map[string]any{"topic": args[0], "id": strconv.FormatUint(r.ID, 10), "subscribers": r.Subscribers, "queues": r.Queues})
			continue
		}
		fmt.Fprintf(e.stdout, "published message %d to topic %s: %s, %s\n", r.ID, args[0],
			plural(r.Subscribers, "live subscriber", "live subscribers"), plural(r.Queues, "bound queue", "bound queues"))
	}
	return nil
}

func tailFlags(fs *flag.FlagSet, e *env) {
	fs.IntVar(&e.tailCount, "count", 0, "stop after `n` messages (0: until interrupted)")
}

// runTail follows a topic until interrupted (or --count messages).
func runTail(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return e.usageErr(fs, "want exactly one TOPIC")
	}
	if e.tailCount < 0 {
		return e.usageErr(fs, "--count %d: must not be negative", e.tailCount)
	}
	topic := args[0]
	ctx, cancel := e.reqCtx(0)
	sub, err := e.h.SubscribeTopic(ctx, topic, client.TopicOptions{})
	cancel()
	if err != nil {
		if e.ctx.Err() != nil {
			return nil // interrupted while subscribing: a normal end
		}
		return err
	}
	defer sub.Close()
	if !e.json {
		e.note("following topic %s (new messages only; Ctrl-C to stop)", topic)
	}
	for n := 0; e.tailCount == 0 || n < e.tailCount; n++ {
		tm, err := sub.Next(e.ctx)
		if err != nil {
			if e.ctx.Err() != nil {
				return nil // interrupted: a normal end
			}
			if errors.Is(err, broker.ErrLagged) {
				return fmt.Errorf("topic %s: this subscriber fell more than the topic's buffer behind and was dropped (messages were missed)", topic)
			}
			return err
		}
		m := newMessage(tm.Body)
		m.Topic, m.ID, m.MsgID, m.Key, m.Time, m.Headers = topic, strconv.FormatUint(tm.ID, 10), tm.MsgID, tm.Key, tm.Time, tm.Headers
		e.printMessage(m)
	}
	return nil
}

func runAppend(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) < 1 {
		return e.usageErr(fs, "missing STREAM")
	}
	o := &e.pub
	bodies, err := e.bodies(fs, args, o)
	if err != nil {
		return err
	}
	for _, body := range bodies {
		ctx, cancel := e.reqCtx(0)
		offs, err := e.h.Append(ctx, args[0], o.message(body))
		cancel()
		if err != nil {
			return err
		}
		if e.json {
			e.printJSON(map[string]any{"stream": args[0], "offset": offs[0]})
		} else {
			fmt.Fprintf(e.stdout, "appended to stream %s at offset %d (%d bytes)\n", args[0], offs[0], len(body))
		}
	}
	return nil
}

type readOpts struct {
	from     string
	max      int
	wait     time.Duration
	group    string
	noCommit bool
	follow   bool
	count    int
}

func readFlags(fs *flag.FlagSet, e *env) {
	o := &e.read
	fs.StringVar(&o.from, "from", "start", "where to start: start, end, an `offset`, or an RFC 3339 time")
	fs.IntVar(&o.max, "max", 100, "read up to `n` messages (1..10000)")
	durationVar(fs, &o.wait, "wait", 0, "wait up to this `duration` (at most 60s) for a message")
	fs.StringVar(&o.group, "group", "", "read as consumer `group` from its committed offset, then commit what was printed")
	fs.BoolVar(&o.noCommit, "no-commit", false, "with --group: do not commit (peek)")
	fs.BoolVar(&o.follow, "follow", false, "keep reading new messages until interrupted (or --count)")
	fs.IntVar(&o.count, "count", 0, "with --follow: stop after `n` messages")
}

func parseFrom(s string) (client.Position, error) {
	switch s {
	case "", "start":
		return client.FromStart(), nil
	case "end":
		return client.FromEnd(), nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return client.FromOffset(n), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return client.FromTime(t), nil
	}
	return client.Position{}, fmt.Errorf("%q: want start, end, an offset or an RFC 3339 time like 2026-12-04T10:00:00Z", s)
}

// runRead reads a stream from a position, or as a consumer group (and
// commits what it printed); --follow keeps going.
func runRead(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return e.usageErr(fs, "want exactly one STREAM")
	}
	o := &e.read
	stream := args[0]
	if o.max < 1 || o.max > 10000 {
		return e.usageErr(fs, "--max %d: want 1..10000", o.max)
	}
	if o.wait < 0 || o.wait > 60*time.Second {
		return e.usageErr(fs, "--wait %s: want 0..60s", o.wait)
	}
	if o.group != "" && o.from != "start" {
		return e.usageErr(fs, "--from and --group: a group reads from its committed offset")
	}
	if o.noCommit && o.group == "" {
		return e.usageErr(fs, "--no-commit needs --group")
	}
	if o.count != 0 && !o.follow {
		return e.usageErr(fs, "--count needs --follow (use --max for one read)")
	}
	from, err := parseFrom(o.from)
	if err != nil {
		return e.usageErr(fs, "--from %v", err)
	}
	wait := o.wait
	if o.follow && wait == 0 {
		wait = 30 * time.Second
	}
	printed := 0
	for {
		max := o.max
		if o.count > 0 && o.count-printed < max {
			max = o.count - printed
		}
		ctx, cancel := e.reqCtx(wait)
		var page client.StreamPage
		if o.group != "" {
			page, err = e.h.Fetch(ctx, stream, o.group, broker.ReadOptions{Max: max, Wait: wait})
		} else {
			page, err = e.h.ReadStream(ctx, stream, from, broker.ReadOptions{Max: max, Wait: wait})
		}
		cancel()
		if err != nil {
			if o.follow && e.ctx.Err() != nil {
				return nil
			}
			if o.follow && errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return err
		}
		for _, sm := range page.Messages {
			m := newMessage(sm.Body)
			m.Stream, m.Offset, m.Time, m.Headers = stream, sm.Offset, sm.Time, sm.Headers
			e.printMessage(m)
		}
		printed += len(page.Messages)
		if o.group != "" && !o.noCommit && len(page.Messages) > 0 {
			ctx, cancel := e.reqCtx(0)
			err := e.h.Commit(ctx, stream, o.group, page.Next)
			cancel()
			if err != nil {
				return fmt.Errorf("committing offset %d for group %s: %w", page.Next, o.group, err)
			}
		}
		from = client.FromOffset(page.Next)
		if !o.follow || (o.count > 0 && printed >= o.count) {
			if !e.json {
				switch {
				case len(page.Messages) == 0 && o.group != "":
					e.note("no new messages in stream %s for group %s (next offset %d)", stream, o.group, page.Next)
				case len(page.Messages) == 0:
					e.note("no messages in stream %s from offset %d", stream, page.Next)
				case o.group != "" && !o.noCommit:
					e.note("group %s committed offset %d (the next it reads)", o.group, page.Next)
				default:
					e.note("next offset %d", page.Next)
				}
			}
			return nil
		}
	}
}
