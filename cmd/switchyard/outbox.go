package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

// runOutbox inspects and settles the messages a kit/outbox relay parked
// because the broker refused them for good (too large).
func runOutbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("outbox", "parked|redrive|discard --db URL [--limit N] [ROW-ID...]",
		"Inspect and settle the messages a kit/outbox relay parked in sy_outbox_parked\n"+
			"because the broker refused them for good (larger than the destination's\n"+
			"max_message_size): the relay goes on without them.\n\n"+
			"  parked          list them (row id, destination, key, size, the broker's error)\n"+
			"  redrive [ID..]  move them (all, or the given row ids) back to the outbox, to be\n"+
			"                  published again: first raise the limit or the relay parks them again\n"+
			"  discard [ID..]  delete them for good\n\n"+
			"URL is the service's database: sqlite:PATH (or a path) or postgres://... See docs/kit.md.", stderr)
	db := fs.String("db", "", "the service's database `URL` (sqlite:PATH or postgres://...; required)")
	limit := fs.Int("limit", 100, "parked: list at most `N` messages (0: all)")
	if len(args) == 0 || (args[0] != "parked" && args[0] != "redrive" && args[0] != "discard") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return parseFlags(fs, args, stdout)
		}
		if len(args) == 0 {
			fmt.Fprintln(stderr, "switchyard outbox: missing action: expected parked, redrive or discard")
		} else {
			fmt.Fprintf(stderr, "switchyard outbox: unknown action %q: expected parked, redrive or discard\n", args[0])
		}
		fs.Usage()
		return errUsage
	}
	action := args[0]
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	if *db == "" {
		fmt.Fprintln(stderr, "switchyard outbox: --db URL is required")
		fs.Usage()
		return errUsage
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "switchyard outbox: invalid --limit %d: expected 0 or more\n", *limit)
		return errUsage
	}
	var ids []int64
	for _, a := range fs.Args() {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			fmt.Fprintf(stderr, "switchyard outbox %s: invalid row id %q: expected a positive integer (see switchyard outbox parked)\n", action, a)
			return errUsage
		}
		ids = append(ids, id)
	}
	if action == "parked" && len(ids) > 0 {
		fmt.Fprintf(stderr, "switchyard outbox parked: unexpected argument %q: expected only flags\n", fs.Arg(0))
		return errUsage
	}
	d, err := store.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer d.Close()
	switch action {
	case "parked":
		ps, err := outbox.Parked(ctx, d, *limit)
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			fmt.Fprintln(stdout, "no parked messages")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROW\tMSG-ID\tDEST\tKEY\tBYTES\tPARKED\tERROR")
		for _, p := range ps {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.MsgID, p.Dest, p.Key, p.Size, p.ParkedAt.UTC().Format(time.RFC3339), p.Error)
		}
		return tw.Flush()
	case "redrive":
		n, err := outbox.Redrive(ctx, d, ids...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "redrove %d parked messages to the outbox\n", n)
		if len(ids) > 0 && n < len(ids) {
			return fmt.Errorf("%d of the %d row ids given are not parked", len(ids)-n, len(ids))
		}
	case "discard":
		n, err := outbox.Discard(ctx, d, ids...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "discarded %d parked messages\n", n)
		if len(ids) > 0 && n < len(ids) {
			return fmt.Errorf("%d of the %d row ids given are not parked", len(ids)-n, len(ids))
		}
	}
	return nil
}
