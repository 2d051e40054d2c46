package discovery

import (
	"testing"
	"time"
)

func snap(insts ...Instance) ServiceSnapshot { return ServiceSnapshot{Instances: insts} }

func inst(id, addr string, st State) Instance {
	return Instance{Registration: Registration{Service: "s", ID: id, Address: addr}, State: st}
}

func TestTracker(t *testing.T) {
	var tr Tracker
	ts, changed := tr.Apply(snap(inst("b", "h:2", StateUp), inst("a", "h:1", StateUp)))
	if !changed || len(ts) != 2 || ts[0].Address != "h:1" || ts[1].Index != 1 {
		t.Fatalf("first apply: %v %v", ts, changed)
	}
	ts[0].Eject(time.Now().Add(time.Hour))
	// Same addresses: no rebuild; drain applies in place.
	ts2, changed := tr.Apply(snap(inst("a", "h:1", StateDraining), inst("b", "h:2", StateUp)))
	if changed || &ts2[0] != &ts[0] || !ts[0].Draining() {
		t.Fatalf("drain: changed %v, draining %v", changed, ts[0].Draining())
	}
	// An operator undrains h:1; the registry's unchanged state does not
	// override that.
	ts[0].SetDraining(false)
	tr.Apply(snap(inst("a", "h:1", StateDraining), inst("b", "h:2", StateUp)))
	if ts[0].Draining() {
		t.Error("unchanged registry state overrode the operator")
	}
	// A join rebuilds; h:1 keeps its ejection.
	ts3, changed := tr.Apply(snap(inst("a", "h:1", StateUp), inst("b", "h:2", StateUp), inst("c", "h:0", StateUp)))
	if !changed || len(ts3) != 3 || ts3[1].Address != "h:1" || ts3[1].Index != 1 || !ts3[1].Ejected(time.Now()) {
		t.Fatalf("join: %v", ts3)
	}
	// Two instances at one address: one target, draining only when both drain.
	ts4, _ := tr.Apply(snap(inst("a", "h:1", StateUp), inst("a2", "h:1", StateDraining)))
	if len(ts4) != 1 || ts4[0].Draining() {
		t.Fatalf("shared address: %v draining %v", ts4, ts4[0].Draining())
	}
	if ts5, changed := tr.Apply(snap()); !changed || len(ts5) != 0 {
		t.Fatalf("empty: %v %v", ts5, changed)
	}
	// A tracker rebased on carried targets keeps the drain states it knew.
	base := NewTracker(ts4, &tr)
	if len(base.Targets()) != 1 {
		t.Fatal("rebase lost the targets")
	}
}
