package discovery

import (
	"slices"

	"github.com/switchyard/switchyard/upstream"
)

// Tracker turns a service's successive instance sets into upstream
// targets, the way the gateway's pools and the client Balancer consume
// them: one target per distinct address, sorted by address. Targets of
// addresses that stay keep their live state (health, ejection, drain,
// latency average); the registry's draining state is applied when it
// changes, so an operator's drain of a target (admin API) holds until the
// registry says otherwise. Not safe for concurrent use: one owner applies
// the snapshots.
type Tracker struct {
	targets []*upstream.Target
	drained map[string]bool // address → registry draining state last applied
}

// Targets returns the current targets (do not modify the slice).
func (t *Tracker) Targets() []*upstream.Target { return t.targets }

// Apply applies snap. When the set of addresses changed it returns a new
// slice of targets and true: the caller builds its policy, breakers and
// checks over it. Otherwise it updates drain states in place and returns
// the current slice and false.
func (t *Tracker) Apply(snap ServiceSnapshot) ([]*upstream.Target, bool) {
	// An address is draining when every instance at it drains.
	drain := map[string]bool{}
	for _, in := range snap.Instances {
		d, seen := drain[in.Address]
		drain[in.Address] = (d || !seen) && in.State == StateDraining
	}
	addrs := make([]string, 0, len(drain))
	for a := range drain {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	same := len(addrs) == len(t.targets)
	for i := 0; same && i < len(addrs); i++ {
		same = t.targets[i].Address == addrs[i]
	}
	if same {
		t.applyDrain(t.targets, drain)
		return t.targets, false
	}
	old := make(map[string]*upstream.Target, len(t.targets))
	for _, tg := range t.targets {
		old[tg.Address] = tg
	}
	next := make([]*upstream.Target, len(addrs))
	for i, a := range addrs {
		next[i] = upstream.NewTarget(a, i, 1)
		if o, ok := old[a]; ok {
			next[i].CarryStateFrom(o)
			next[i].SetWeight(o.Weight())
		}
	}
	t.applyDrain(next, drain)
	t.targets = next
	return next, true
}

func (t *Tracker) applyDrain(targets []*upstream.Target, drain map[string]bool) {
	if t.drained == nil {
		t.drained = map[string]bool{}
	}
	for _, tg := range targets {
		d := drain[tg.Address]
		if prev, ok := t.drained[tg.Address]; !ok || prev != d {
			tg.SetDraining(d)
		}
	}
	for a := range t.drained {
		if _, ok := drain[a]; !ok {
			delete(t.drained, a)
		}
	}
	for a, d := range drain {
		t.drained[a] = d
	}
}

// NewTracker returns a tracker whose current targets are targets (carried
// over from a previous generation, e.g. across a config reload) and which
// remembers the registry drain states prev applied (prev may be nil). The
// caller must keep prev's owner from applying snapshots meanwhile.
func NewTracker(targets []*upstream.Target, prev *Tracker) *Tracker {
	t := &Tracker{targets: targets, drained: map[string]bool{}}
	if prev != nil {
		for a, d := range prev.drained {
			t.drained[a] = d
		}
	}
	return t
}
