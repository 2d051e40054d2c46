package saga_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"

	"github.com/switchyard/switchyard/kit/saga"
)

// TestIdempotencyKeysNeverCollide: keys are "<id>/<step>" and
// "<id>/<step>/compensate", and saga ids may contain '/'. A step named
// "compensate" made saga "ride-7/charge"'s action key equal saga
// "ride-7"'s compensation key of step "charge": the payment service
// would take the refund for a repeat of the other saga's action (or the
// reverse) and drop it. Such a step name is refused, which makes the
// keys of different (saga, step, phase) triples always differ.
func TestIdempotencyKeysNeverCollide(t *testing.T) {
	noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
	def := &saga.Definition{Name: "pay", Steps: []saga.Step{{Name: "charge", Action: noop}, {Name: "compensate", Action: noop}}}
	if err := def.Validate(); err == nil {
		t.Fatalf("a step named %q was accepted: ActionKey(%q, %q) = %q = CompensationKey(%q, %q)",
			"compensate", "ride-7/charge", "compensate", saga.ActionKey("ride-7/charge", "compensate"), "ride-7", "charge")
	}
}

// TestErrorsThatAreNotText: a step's error is stored as the saga's
// last error and in its history, in text columns. An error that quotes
// a binary reply (a NUL byte, invalid UTF-8: a panic on a []byte, a
// service's raw body) made PostgreSQL refuse every transition that
// recorded it: the orchestrator logged "the step runs again", ran the
// action again without counting the attempt, and the saga never
// compensated nor parked. And since transitions commit in groups, the
// refusal failed every other saga's transition in the same group too.
// Such text is stored with the offending bytes replaced.
func TestErrorsThatAreNotText(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var runs atomic.Int64
		def := &saga.Definition{Name: "binary", Retry: fast, Steps: []saga.Step{{Name: "call",
			Action: func(ctx context.Context, sc *saga.StepContext) error {
				runs.Add(1)
				return errors.New("upstream said \x00\xff\xfe")
			}}}}
		o := newOrch(t, db, def)
		if err := o.Start(ctx, def, "b1", nil); err != nil {
			t.Fatal(err)
		}
		run(t, o)
		i := wait(t, o, "b1")
		if i.State != saga.Compensated {
			t.Fatalf("state %s, want compensated (last error %q)", i.State, i.LastError)
		}
		if n := runs.Load(); n != 3 {
			t.Fatalf("the action ran %d times, want the policy's 3 attempts", n)
		}
		if !strings.HasPrefix(i.LastError, "upstream said ") || strings.ContainsRune(i.LastError, 0) || !utf8.ValidString(i.LastError) {
			t.Fatalf("last error %q: want the message, as text", i.LastError)
		}
		// An error of a megabyte (a whole response body quoted) is cut,
		// not stored whole with every attempt.
		huge := &saga.Definition{Name: "huge", Retry: fast, Steps: []saga.Step{{Name: "call",
			Action: func(ctx context.Context, sc *saga.StepContext) error {
				return errors.New(strings.Repeat("é", 1<<19))
			}}}}
		if err := o.Register(huge); err != nil {
			t.Fatal(err)
		}
		if err := o.Start(ctx, huge, "h1", nil); err != nil {
			t.Fatal(err)
		}
		i = wait(t, o, "h1")
		if i.State != saga.Compensated || len(i.LastError) > 20<<10 || !utf8.ValidString(i.LastError) || !strings.HasSuffix(i.LastError, "(1048576 bytes in all)") {
			t.Fatalf("state %s, last error of %d bytes ending %q", i.State, len(i.LastError), i.LastError[max(0, len(i.LastError)-40):])
		}
		if err := o.Start(ctx, def, "b\x00", nil); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("an id with a NUL byte: %v", err)
		}
		// Names are the definition's: refused, not rewritten.
		bad := &saga.Definition{Name: "n", Steps: []saga.Step{{Name: "a\x00", Action: func(context.Context, *saga.StepContext) error { return nil }}}}
		if err := bad.Validate(); err == nil {
			t.Fatal("a step name with a NUL byte was accepted")
		}
		bad = &saga.Definition{Name: "\xff", Steps: []saga.Step{{Name: "a", Action: func(context.Context, *saga.StepContext) error { return nil }}}}
		if err := bad.Validate(); err == nil {
			t.Fatal("a definition name that is not UTF-8 was accepted")
		}
	})
}
