package sybroker

import "testing"

// The credit of released messages goes back in steps no larger than the
// window: with a Prefetch above 2,097,151 the step was Prefetch/2, above
// the window capped at 1<<20, so no credit ever went back and the
// subscription stalled after its first 1<<20 messages. Below the cap the
// step stays Prefetch/2.
func TestFlowStepsWithinWindow(t *testing.T) {
	for _, p := range []int{1, 2, 3, 256, 1000, maxWindow/unsettledPerPrefetch - 1, maxWindow / unsettledPerPrefetch, 1 << 21, 1<<22 + 1, 1 << 30} {
		window, every := flowSteps(p)
		if window < 1 || window > maxWindow || every < 1 || every > window {
			t.Errorf("Prefetch %d: window %d, credit step %d: want 1 <= step <= window <= %d", p, window, every, maxWindow)
		}
		if p == 1 && (window != 1 || every != 1) {
			t.Errorf("Prefetch 1: window %d, step %d; want 1, 1 (one message at a time)", window, every)
		}
		if p > 1 && p < maxWindow/unsettledPerPrefetch && (window != 4*p || every != max(p/2, 1)) {
			t.Errorf("Prefetch %d: window %d, step %d; want %d, %d", p, window, every, 4*p, max(p/2, 1))
		}
	}
}
