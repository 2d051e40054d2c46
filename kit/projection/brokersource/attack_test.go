package brokersource_test

import (
	"context"
	"errors"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/projection/brokersource"
)

// retained is a stream whose retention has dropped every offset before
// first: a read from an older offset starts at first, as the broker's do.
type retained struct{ first, last uint64 }

func (r retained) Append(ctx context.Context, stream string, msgs ...broker.Message) ([]uint64, error) {
	return nil, errors.New("read only")
}

func (r retained) ReadStream(ctx context.Context, stream string, from client.Position, opts broker.ReadOptions) (client.StreamPage, error) {
	_, off, _ := from.Where()
	off = max(off, r.first)
	var page client.StreamPage
	for o := off; o <= r.last && len(page.Messages) < opts.Max; o++ {
		page.Messages = append(page.Messages, broker.StreamMessage{Offset: o, Body: []byte(`{}`), Headers: map[string]string{"type": "Charged"}})
	}
	page.Next = off + uint64(len(page.Messages))
	return page, nil
}

// TestReadRefusesARetentionGap: a projection that fell behind the
// stream's retention (its checkpoint at 10, the broker keeping offsets
// from 50) read the next page from 50 and moved on: offsets 11-49 were
// never applied and nothing said so — a silently wrong view that claims
// exactly-once. Read now fails with ErrGap naming the lost offsets (the
// projection stops there, its lag growing, until an operator decides),
// unless Options.SkipGaps accepts the loss.
func TestReadRefusesARetentionGap(t *testing.T) {
	ctx := context.Background()
	src, err := brokersource.New(retained{first: 50, last: 60}, "payments", brokersource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := src.Read(ctx, 10, 100); !errors.Is(err, brokersource.ErrGap) {
		t.Fatalf("read after 10 from a stream retaining 50..60: %d messages, %v; want ErrGap", len(msgs), err)
	}
	// Reading from before the first message of a stream that kept
	// everything is no gap; neither is the next offset.
	if msgs, err := src.Read(ctx, 49, 100); err != nil || len(msgs) != 11 || msgs[0].Position != 50 {
		t.Fatalf("read after 49: %d messages, %v", len(msgs), err)
	}
	whole, _ := brokersource.New(retained{first: 1, last: 5}, "payments", brokersource.Options{})
	if msgs, err := whole.Read(ctx, 0, 100); err != nil || len(msgs) != 5 {
		t.Fatalf("read from the start: %d messages, %v", len(msgs), err)
	}
	skip, _ := brokersource.New(retained{first: 50, last: 60}, "payments", brokersource.Options{SkipGaps: true})
	if msgs, err := skip.Read(ctx, 10, 100); err != nil || len(msgs) != 11 {
		t.Fatalf("SkipGaps: %d messages, %v", len(msgs), err)
	}
}
