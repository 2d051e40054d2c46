package saga_test

import (
	"context"
	"testing"

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
