package flow_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/kit/flow"
)

// TestGatherQuorumAboveCalls: a quorum is a promise about how many
// answers agree ("3 of 5 replicas"), and the calls are often built from
// what discovery returned. With fewer calls than the quorum, Gather
// lowered the quorum to the number of calls and reported success: 2 of
// 2 passed for a quorum of 3, against its own doc (ErrNoQuorum when fewer
// calls than the quorum succeeded). It is ErrNoQuorum, without calling
// anything (the calls could not reach the quorum, and may have effects).
// Zero calls with a quorum is the same.
func TestGatherQuorumAboveCalls(t *testing.T) {
	var called atomic.Int32
	ok := func(ctx context.Context) (int, error) { called.Add(1); return 1, nil }
	res, err := flow.Gather(context.Background(), flow.GatherOptions{Quorum: 3}, ok, ok)
	if !errors.Is(err, flow.ErrNoQuorum) || len(res) != 0 {
		t.Fatalf("quorum 3 of 2 calls: %v %v, want ErrNoQuorum", res, err)
	}
	if _, err := flow.Gather[int](context.Background(), flow.GatherOptions{Quorum: 1}); !errors.Is(err, flow.ErrNoQuorum) {
		t.Fatalf("quorum 1 of no calls: %v, want ErrNoQuorum", err)
	}
	if n := called.Load(); n != 0 {
		t.Fatalf("%d calls made for a quorum they could not reach", n)
	}
	// Quorum 0 still means all of them, and no calls is then success.
	if res, err := flow.Gather(context.Background(), flow.GatherOptions{}, ok, ok); err != nil || len(res) != 2 {
		t.Fatalf("quorum 0 (all): %v %v", res, err)
	}
	if _, err := flow.Gather[int](context.Background(), flow.GatherOptions{}); err != nil {
		t.Fatalf("no calls, no quorum: %v", err)
	}
}
