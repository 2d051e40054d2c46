package cli

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
)

var kinds = []string{"queue", "topic", "stream"}

// kindArg accepts queue/queues, topic/topics, stream/streams.
func kindArg(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), "s")
	for _, k := range kinds {
		if s == k {
			return k, true
		}
	}
	return "", false
}

func runLs(e *env, fs *flag.FlagSet, args []string) error {
	want := map[string]bool{"queue": true, "topic": true, "stream": true}
	if len(args) > 1 {
		return e.usageErr(fs, "want at most one of queues, topics, streams")
	}
	if len(args) == 1 {
		k, ok := kindArg(args[0])
		if !ok {
			return e.usageErr(fs, "%q: want queues, topics or streams", args[0])
		}
		want = map[string]bool{k: true}
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	var (
		queues  []broker.QueueInfo
		topics  []broker.TopicInfo
		streams []broker.StreamInfo
	)
	// A name listed and then deleted before its info is read is skipped.
	if want["queue"] {
		names, err := e.h.Queues(ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			info, err := e.h.QueueInfo(ctx, n)
			if errors.Is(err, broker.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			queues = append(queues, info)
		}
	}
	if want["topic"] {
		names, err := e.h.Topics(ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			info, err := e.h.TopicInfo(ctx, n)
			if errors.Is(err, broker.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			topics = append(topics, info)
		}
	}
	if want["stream"] {
		names, err := e.h.Streams(ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			info, err := e.h.StreamInfo(ctx, n)
			if errors.Is(err, broker.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			streams = append(streams, info)
		}
	}
	if e.json {
		for _, q := range queues {
			e.printJSON(map[string]any{"kind": "queue", "name": q.Name, "depth": q.Depth, "in_flight": q.InFlight,
				"delayed": q.Delayed, "dead_lettered": q.DeadLettered})
		}
		for _, t := range topics {
			e.printJSON(map[string]any{"kind": "topic", "name": t.Name, "subscribers": t.Subscribers,
				"published": t.Published, "queues": t.Config.Queues})
		}
		for _, s := range streams {
			e.printJSON(map[string]any{"kind": "stream", "name": s.Name, "messages": streamCount(s),
				"first_offset": s.FirstOffset, "last_offset": s.LastOffset, "bytes": s.Bytes, "groups": s.Groups})
		}
		return nil
	}
	if len(queues)+len(topics)+len(streams) == 0 {
		e.note("no %s", strings.Join(pluralKinds(want), ", "))
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tMESSAGES\tDETAILS")
	for _, q := range queues {
		fmt.Fprintf(tw, "queue\t%s\t%d\tin_flight=%d delayed=%d dead_lettered=%d\n", q.Name, q.Depth, q.InFlight, q.Delayed, q.DeadLettered)
	}
	for _, t := range topics {
		bound := "-"
		if len(t.Config.Queues) > 0 {
			bound = strings.Join(t.Config.Queues, ",")
		}
		fmt.Fprintf(tw, "topic\t%s\t%d\tsubscribers=%d queues=%s\n", t.Name, t.Published, t.Subscribers, bound)
	}
	for _, s := range streams {
		fmt.Fprintf(tw, "stream\t%s\t%d\toffsets=%s bytes=%d groups=%s\n", s.Name, streamCount(s), offsets(s), s.Bytes, groups(s))
	}
	return tw.Flush()
}

func pluralKinds(want map[string]bool) []string {
	var out []string
	for _, k := range kinds {
		if want[k] {
			out = append(out, k+"s")
		}
	}
	return out
}

func streamCount(s broker.StreamInfo) uint64 {
	if s.LastOffset == 0 || s.LastOffset < s.FirstOffset {
		return 0
	}
	return s.LastOffset - s.FirstOffset + 1
}

func offsets(s broker.StreamInfo) string {
	if streamCount(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d..%d", s.FirstOffset, s.LastOffset)
}

func groups(s broker.StreamInfo) string {
	if len(s.Groups) == 0 {
		return "-"
	}
	var parts []string
	for _, g := range sortedKeys(s.Groups) {
		parts = append(parts, fmt.Sprintf("%s@%d", g, s.Groups[g]))
	}
	return strings.Join(parts, ",")
}

// runInfo shows a queue, topic or stream; without a kind, every kind
// with that name.
func runInfo(e *env, fs *flag.FlagSet, args []string) error {
	try := kinds
	var name string
	switch len(args) {
	case 1:
		name = args[0]
	case 2:
		k, ok := kindArg(args[0])
		if !ok {
			return e.usageErr(fs, "%q: want queue, topic or stream", args[0])
		}
		try, name = []string{k}, args[1]
	default:
		return e.usageErr(fs, "want NAME or KIND NAME")
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	found := 0
	for _, k := range try {
		var (
			info any
			err  error
		)
		switch k {
		case "queue":
			info, err = e.h.QueueInfo(ctx, name)
		case "topic":
			info, err = e.h.TopicInfo(ctx, name)
		case "stream":
			info, err = e.h.StreamInfo(ctx, name)
		}
		if errors.Is(err, broker.ErrNotFound) && len(try) > 1 {
			continue
		}
		if err != nil {
			return err
		}
		found++
		e.printInfo(k, info)
	}
	if found == 0 {
		return fmt.Errorf("no queue, topic or stream named %q", name)
	}
	return nil
}

// printInfo prints an info value as JSON (with its kind) or as
// "key: value" lines, settings included.
func (e *env) printInfo(kind string, info any) {
	v := reflect.ValueOf(info)
	if e.json {
		m := map[string]any{"kind": kind}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			m[name] = v.Field(i).Interface()
		}
		e.printJSON(m)
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "%s %s\n", kind, v.FieldByName("Name").String())
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			f := v.Field(i)
			if t.Field(i).Anonymous {
				walk(prefix, f)
				continue
			}
			if name == "name" || name == "-" || (strings.Contains(opts, "omit") && f.IsZero()) {
				continue
			}
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Time{}) {
				walk(prefix+name+".", f)
				continue
			}
			fmt.Fprintf(tw, "  %s%s:\t%s\n", prefix, name, showValue(f))
		}
	}
	walk("", v)
	tw.Flush()
	fmt.Fprintln(e.stdout)
}

func showValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case broker.Duration:
		return x.Std().String()
	case time.Time:
		return x.UTC().Format(timeFormat)
	case []string:
		if len(x) == 0 {
			return "-"
		}
		return strings.Join(x, ", ")
	case map[string]uint64:
		if len(x) == 0 {
			return "-"
		}
		var parts []string
		for _, k := range sortedKeys(x) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, x[k]))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v.Interface())
}

// runDeclare creates a queue, topic or stream or replaces its settings
// with SETTING=VALUE arguments (the names of the config file and HTTP
// API: max_length=1000 visibility_timeout=30s queues=a,b).
func runDeclare(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) < 2 {
		return e.usageErr(fs, "want KIND NAME [SETTING=VALUE...]")
	}
	kind, ok := kindArg(args[0])
	if !ok {
		return e.usageErr(fs, "%q: want queue, topic or stream", args[0])
	}
	name := args[1]
	var cfg any
	switch kind {
	case "queue":
		cfg = &broker.QueueConfig{}
	case "topic":
		cfg = &broker.TopicConfig{}
	default:
		cfg = &broker.StreamConfig{}
	}
	for _, a := range args[2:] {
		if err := setField(cfg, a); err != nil {
			return e.usageErr(fs, "%s settings: %v", kind, err)
		}
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	var (
		info any
		err  error
	)
	infoOf := func() (any, error) {
		switch kind {
		case "queue":
			return e.h.QueueInfo(ctx, name)
		case "topic":
			return e.h.TopicInfo(ctx, name)
		default:
			return e.h.StreamInfo(ctx, name)
		}
	}
	if e.ifAbsent {
		// Looked up first, so an existing one is never sent a declare
		// at all (a broker older than if_absent would replace its
		// settings); the declare itself is if-absent too, so one
		// created in between keeps its settings.
		info, err = infoOf()
		if err == nil {
			if !e.json {
				fmt.Fprintf(e.stdout, "exists ")
			}
			e.printInfo(kind, info)
			if diff := settingsDiff(name, cfg, info, args[2:]); diff != "" {
				fmt.Fprintf(e.stderr, "switchyard broker: %s %q exists with other settings than asked, kept (--if-absent): %s\n", kind, name, diff)
			}
			return nil
		}
		if !errors.Is(err, broker.ErrNotFound) {
			return err
		}
	}
	switch c := cfg.(type) {
	case *broker.QueueConfig:
		if e.ifAbsent {
			err = e.h.DeclareQueueIfAbsent(ctx, name, *c)
		} else {
			err = e.h.DeclareQueue(ctx, name, *c)
		}
	case *broker.TopicConfig:
		if e.ifAbsent {
			err = e.h.DeclareTopicIfAbsent(ctx, name, *c)
		} else {
			err = e.h.DeclareTopic(ctx, name, *c)
		}
	case *broker.StreamConfig:
		if e.ifAbsent {
			err = e.h.DeclareStreamIfAbsent(ctx, name, *c)
		} else {
			err = e.h.DeclareStream(ctx, name, *c)
		}
	}
	if err == nil {
		info, err = infoOf()
	}
	if err != nil {
		return err
	}
	if !e.json {
		fmt.Fprintf(e.stdout, "declared ")
	}
	e.printInfo(kind, info)
	return nil
}

func declareFlags(fs *flag.FlagSet, e *env) {
	fs.BoolVar(&e.ifAbsent, "if-absent", false, "create it only if it does not exist: an existing one keeps its settings (and a topic its queues); says \"exists\" and exits 0")
}

// settingsDiff names the settings given as SETTING=VALUE args whose value
// differs from the existing destination's (info's Config), both with
// their defaults: "max_deliveries=5 (asked 1)", or "".
func settingsDiff(name string, asked, info any, args []string) string {
	iv := reflect.ValueOf(info)
	if iv.Kind() == reflect.Pointer {
		iv = iv.Elem()
	}
	if iv.Kind() != reflect.Struct || !iv.FieldByName("Config").IsValid() {
		return ""
	}
	withDefaults := func(v reflect.Value) reflect.Value {
		m := v.MethodByName("WithDefaults")
		switch {
		case !m.IsValid():
			return v
		case m.Type().NumIn() == 1:
			return m.Call([]reflect.Value{reflect.ValueOf(name)})[0]
		case m.Type().NumIn() == 0:
			return m.Call(nil)[0]
		}
		return v
	}
	have := withDefaults(iv.FieldByName("Config"))
	want := withDefaults(reflect.ValueOf(asked).Elem())
	if have.Type() != want.Type() {
		return ""
	}
	var diffs []string
	for _, a := range args {
		key, val, _ := strings.Cut(a, "=")
		for i := 0; i < want.NumField(); i++ {
			if n, _, _ := strings.Cut(want.Type().Field(i).Tag.Get("json"), ","); n != key {
				continue
			}
			if h := have.Field(i); !reflect.DeepEqual(h.Interface(), want.Field(i).Interface()) {
				diffs = append(diffs, fmt.Sprintf("%s=%v (asked %s)", key, fmtSetting(h), val))
			}
		}
	}
	return strings.Join(diffs, ", ")
}

// fmtSetting writes a setting's value as SETTING=VALUE takes it.
func fmtSetting(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case broker.Duration:
		return x.Std().String()
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v.Interface())
}

// setField sets one SETTING=VALUE on a config struct by its JSON name.
func setField(cfg any, arg string) error {
	key, val, ok := strings.Cut(arg, "=")
	if !ok || key == "" {
		return fmt.Errorf("%q: want SETTING=VALUE", arg)
	}
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "-" || name == "" {
			continue
		}
		names = append(names, name)
		if name != key {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case broker.Duration:
			d, err := time.ParseDuration(val)
			if err != nil {
				return fmt.Errorf("%s=%s: expected a duration like 30s", key, val)
			}
			f.SetInt(int64(d))
			return nil
		case []string:
			var list []string
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					list = append(list, s)
				}
			}
			f.Set(reflect.ValueOf(list))
			return nil
		}
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return fmt.Errorf("%s=%s: expected an integer", key, val)
			}
			f.SetInt(n)
		case reflect.Bool:
			b, err := strconv.ParseBool(val)
			if err != nil {
				return fmt.Errorf("%s=%s: expected true or false", key, val)
			}
			f.SetBool(b)
		case reflect.String:
			f.SetString(val)
		default:
			return fmt.Errorf("%s: cannot be set from the command line", key)
		}
		return nil
	}
	if s := config.Closest(key, names); s != "" {
		return fmt.Errorf("unknown setting %q, did you mean %q?", key, s)
	}
	return fmt.Errorf("unknown setting %q (known: %s)", key, strings.Join(names, ", "))
}

func runDelete(e *env, fs *flag.FlagSet, args []string) error {
	if len(args) != 2 {
		return e.usageErr(fs, "want KIND NAME")
	}
	kind, ok := kindArg(args[0])
	if !ok {
		return e.usageErr(fs, "%q: want queue, topic or stream", args[0])
	}
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	var err error
	switch kind {
	case "queue":
		err = e.h.DeleteQueue(ctx, args[1])
	case "topic":
		err = e.h.DeleteTopic(ctx, args[1])
	default:
		err = e.h.DeleteStream(ctx, args[1])
	}
	if err != nil {
		return err
	}
	if e.json {
		e.printJSON(map[string]any{"kind": kind, "name": args[1], "deleted": true})
	} else {
		fmt.Fprintf(e.stdout, "deleted %s %s\n", kind, args[1])
	}
	return nil
}

// runStatus checks the broker (and counts what it holds), or with QUEUE
// ID shows one message's state.
func runStatus(e *env, fs *flag.FlagSet, args []string) error {
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	switch len(args) {
	case 0:
		if err := e.h.Health(ctx); err != nil {
			return err
		}
		qs, err := e.h.Queues(ctx)
		if err != nil {
			return err
		}
		ts, err := e.h.Topics(ctx)
		if err != nil {
			return err
		}
		ss, err := e.h.Streams(ctx)
		if err != nil {
			return err
		}
		if e.json {
			e.printJSON(map[string]any{"server": e.base, "status": "ok", "queues": len(qs), "topics": len(ts), "streams": len(ss)})
			return nil
		}
		fmt.Fprintf(e.stdout, "broker at %s is up: %s, %s, %s\n", e.base,
			plural(len(qs), "queue", "queues"), plural(len(ts), "topic", "topics"), plural(len(ss), "stream", "streams"))
		return nil
	case 2:
		seq, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil || seq == 0 {
			return e.usageErr(fs, "message id %q: want the positive number a publish answered", args[1])
		}
		st, err := e.h.Status(ctx, args[0], seq)
		if err != nil {
			return err
		}
		if e.json {
			e.printJSON(st)
			return nil
		}
		e.printInfo("message", struct {
			Name string `json:"name"`
			broker.MessageStatus
		}{Name: args[0] + " #" + args[1], MessageStatus: st})
		return nil
	}
	return e.usageErr(fs, "want no arguments, or QUEUE ID")
}

func bindFlags(fs *flag.FlagSet, e *env) {
	fs.BoolVar(&e.bindNew, "create", false, "create the queue (default settings, dead-letter queue QUEUE.dlq) if it does not exist")
}

func runBind(e *env, fs *flag.FlagSet, args []string) error   { return e.bind(fs, args, true) }
func runUnbind(e *env, fs *flag.FlagSet, args []string) error { return e.bind(fs, args, false) }

// bind binds or unbinds one queue of a topic, leaving its other bindings
// (declare topic NAME queues=... replaces them all).
func (e *env) bind(fs *flag.FlagSet, args []string, bind bool) error {
	if len(args) != 2 {
		return e.usageErr(fs, "want TOPIC QUEUE")
	}
	topic, queue := args[0], args[1]
	ctx, cancel := e.reqCtx(0)
	defer cancel()
	var changed bool
	var err error
	if bind {
		changed, err = e.h.BindQueue(ctx, topic, queue, broker.BindOptions{CreateQueue: e.bindNew})
	} else {
		changed, err = e.h.UnbindQueue(ctx, topic, queue)
	}
	if err != nil {
		return err
	}
	if e.json {
		e.printJSON(broker.BindAnswer{Topic: topic, Queue: queue, Bound: bind, Changed: changed})
		return nil
	}
	switch {
	case bind && changed:
		fmt.Fprintf(e.stdout, "bound queue %s to topic %s\n", queue, topic)
	case bind:
		fmt.Fprintf(e.stdout, "queue %s was already bound to topic %s\n", queue, topic)
	case changed:
		fmt.Fprintf(e.stdout, "unbound queue %s from topic %s\n", queue, topic)
	default:
		fmt.Fprintf(e.stdout, "queue %s was not bound to topic %s\n", queue, topic)
	}
	return nil
}
