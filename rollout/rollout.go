package rollout

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// State is where a rollout is.
type State string

// States. Progressing and Paused are active (the new version takes its
// share); the others are final.
const (
	Progressing State = "progressing"
	Paused      State = "paused"
	Promoted    State = "promoted"    // the new version is the stable set
	RolledBack  State = "rolled_back" // the stable set serves everything again
	Aborted     State = "aborted"     // stopped by an operator; as rolled back
	Completed   State = "completed"
)

// ErrNotActive is returned for an operation that needs an active rollout.
var ErrNotActive = errors.New("rollout is not active")

// Rollout is one rollout's state: what is persisted and what the admin API
// shows. It is plain data; its methods are not safe for concurrent use
// (the owner serialises them).
type Rollout struct {
	Spec  Spec  `json:"spec"`
	State State `json:"state"`
	// Step is the current canary step, 1-based (1 for other strategies).
	Step        int       `json:"step"`
	StepStarted time.Time `json:"step_started"`
	// Stable are the addresses serving before the rollout; Canary the new
	// version's (for a discovered upstream, the instances the selector
	// matched when last seen).
	Stable []string `json:"stable"`
	Canary []string `json:"canary"`
	// ConfigTargets are the upstream's targets in the config when the
	// rollout started: a final rollout's target set holds while the
	// config still lists these (a config naming other targets wins).
	ConfigTargets []string  `json:"config_targets,omitempty"`
	Started       time.Time `json:"started"`
	Updated       time.Time `json:"updated"`
	Message       string    `json:"message"`
	// Baseline is the stable cohort's last step window with enough
	// requests, the reference when the stable has no traffic (at 100%).
	Baseline *SLI `json:"baseline,omitempty"`
	// Analysis is the last judgement.
	Analysis *Result `json:"analysis,omitempty"`
	// Phase (rolling) is "gate" while the step's new target waits for its
	// health checks, "drain" while the step's old target drains;
	// PhaseStarted is when it began.
	Phase        string    `json:"phase,omitempty"`
	PhaseStarted time.Time `json:"phase_started,omitempty"`
	// Shadow is what shadow traffic found, recorded when it ended.
	Shadow *ShadowReport `json:"shadow,omitempty"`
	// Replace (rolling on a discovered upstream) is how many old
	// instances served when the rollout started; Drained are the old
	// instances the gateway drained so far, one per healthy new instance
	// (they get no new requests: the orchestrator may stop them); Share
	// is the new version's share of the traffic now.
	Replace int      `json:"replace,omitempty"`
	Drained []string `json:"drained,omitempty"`
	Share   float64  `json:"share,omitempty"`
}

// Instance is what the gateway sees of one of a discovered upstream's
// instances during a rolling rollout.
type Instance struct {
	Address  string
	Healthy  bool      // its health checks pass
	InFlight int64     // requests in flight to it
	Since    time.Time // when the rollout first saw it (new instances)
}

// Result is one analysis of a step: both cohorts' SLIs and the verdict
// (pass, fail or inconclusive) with its reason.
type Result struct {
	Stable  SLI    `json:"stable"`
	Canary  SLI    `json:"canary"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// New returns a progressing rollout of spec (validated, with defaults)
// from the stable addresses to the canary ones.
func New(spec Spec, stable, canary []string, now time.Time) *Rollout {
	r := &Rollout{Spec: spec, State: Progressing, Step: 1, StepStarted: now, Stable: stable, Canary: canary,
		Started: now, Updated: now}
	switch spec.Strategy {
	case BlueGreen:
		r.Message = "switched all traffic to the new version; the previous one is kept warm until promote (rollback is instant)"
	case AB:
		r.Message = fmt.Sprintf("%v%% of %s values go to the new version", spec.Percent, r.cohortKey())
	case Rolling:
		r.Phase, r.PhaseStarted = "gate", now
		r.Message = r.rollingMessage()
		if len(spec.Selector) > 0 {
			r.Phase = ""
			r.Message = fmt.Sprintf("waiting for instances matching %s: each takes traffic once its health checks pass, and an old one is drained for it", selectorString(spec.Selector))
		}
	case Shadow:
		r.Message = "copying requests to the new version; its answers are discarded and compared (promote or roll back to end)"
	default:
		r.Message = fmt.Sprintf("step 1 of %d: %v%% to the canary", len(spec.Steps), spec.Steps[0])
	}
	return r
}

func (r *Rollout) cohortKey() string {
	if r.Spec.Header != "" {
		return "header " + r.Spec.Header
	}
	return "cookie " + r.Spec.Cookie
}

// Active reports whether the new version takes traffic under the rollout
// (progressing or paused).
func (r *Rollout) Active() bool { return r.State == Progressing || r.State == Paused }

// Percent is the share of traffic the new version gets now.
func (r *Rollout) Percent() float64 {
	switch r.State {
	case Promoted, Completed:
		return 100
	case RolledBack, Aborted:
		return 0
	}
	switch r.Spec.Strategy {
	case BlueGreen:
		return 100
	case AB:
		return r.Spec.Percent
	case Shadow:
		return 0 // copies only: no live traffic
	case Rolling:
		if len(r.Spec.Selector) > 0 {
			return r.Share
		}
		// The share of the steps done: targets replaced so far.
		return math.Round(10000*float64(r.Step-1)/float64(r.Steps())) / 100
	}
	if r.Step >= 1 && r.Step <= len(r.Spec.Steps) {
		return r.Spec.Steps[r.Step-1]
	}
	return 0
}

// Steps is the number of steps (1 for strategies without steps).
func (r *Rollout) Steps() int {
	switch r.Spec.Strategy {
	case Canary:
		return len(r.Spec.Steps)
	case Rolling:
		if len(r.Spec.Selector) > 0 {
			return max(r.Replace, 1)
		}
		return max(len(r.Stable), len(r.Canary), 1)
	}
	return 1
}

// AdvanceInstances moves a progressing rolling rollout of a discovered
// upstream on from what the gateway sees: the old instances (not matching
// the selector) and the new ones (matching it), which the orchestrator —
// or a person — starts and stops. Each new instance takes traffic once
// its health checks pass; for each healthy new instance one old instance
// is drained (no new requests; its requests in flight end), so the
// traffic moves instance by instance and the share of the new version is
// healthy new / (healthy new + old still serving). Throughout, the new
// instances' error rate and p99 (canary) are judged against the old ones'
// (stable) as a canary's are: a failing judgement, or a new instance not
// healthy within HealthTimeout of its registration, rolls the rollout
// back (the new instances get no traffic; the drained old ones serve
// again). Once no old instance serves — all drained with no request in
// flight (or DrainTimeout passed), or deregistered — and a new one is
// healthy, the rollout completes. It reports whether anything the gateway
// applies changed (drains, share, step or state).
func (r *Rollout) AdvanceInstances(now time.Time, old, new []Instance, stable, canary SLI) bool {
	if r.State != Progressing || r.Spec.Strategy != Rolling || len(r.Spec.Selector) == 0 {
		return false
	}
	for _, n := range new {
		if !n.Healthy && now.Sub(n.Since) >= time.Duration(r.Spec.HealthTimeout) {
			r.stopInstances(now, fmt.Sprintf("new instance %s did not pass its health checks within %s", n.Address, time.Duration(r.Spec.HealthTimeout)))
			return true
		}
	}
	res := r.Spec.Analysis.Judge(stable, r.Baseline, canary)
	r.Analysis = &res
	if res.Verdict == "fail" {
		r.stopInstances(now, "analysis: "+res.Reason)
		return true
	}
	healthy := 0
	for _, n := range new {
		if n.Healthy {
			healthy++
		}
	}
	// Keep the drains of old instances still registered, up to one per
	// healthy new instance (a new one turning unhealthy gives its old one
	// its traffic back), and drain the next old ones in order.
	isOld := map[string]Instance{}
	for _, o := range old {
		isOld[o.Address] = o
	}
	var drained []string
	for _, a := range r.Drained {
		if _, ok := isOld[a]; ok && len(drained) < healthy {
			drained = append(drained, a)
		}
	}
	for _, o := range old {
		if len(drained) >= healthy {
			break
		}
		if !slices.Contains(drained, o.Address) {
			drained = append(drained, o.Address)
		}
	}
	serving := len(old) - len(drained)
	share := 0.0
	if healthy+serving > 0 {
		share = math.Round(10000*float64(healthy)/float64(healthy+serving)) / 100
	}
	gone := max(r.Replace-len(old), 0)
	step := min(gone+len(drained)+1, r.Steps())
	moved := share != r.Share || step != r.Step || !slices.Equal(drained, r.Drained)
	if !slices.Equal(drained, r.Drained) {
		r.PhaseStarted = now // the latest drain began: its requests get DrainTimeout
	}
	r.Drained, r.Share, r.Step = drained, share, step
	if moved {
		r.StepStarted, r.Updated = now, now
	}
	if serving == 0 && healthy > 0 {
		inflight := int64(0)
		for _, o := range old {
			inflight += o.InFlight
		}
		if inflight == 0 || now.Sub(r.PhaseStarted) >= time.Duration(r.Spec.DrainTimeout) {
			r.Share = 100
			r.finish(now, Completed, fmt.Sprintf("completed: %d new instances serve all traffic; the %d old ones still registered get none (stop them)", healthy, len(old)))
			return true
		}
	}
	sel := selectorString(r.Spec.Selector)
	switch {
	case len(new) == 0:
		r.Message = fmt.Sprintf("waiting for instances matching %s to register: start them; each takes traffic once its health checks pass", sel)
	case len(drained) > 0:
		r.Message = fmt.Sprintf("step %d of %d: %d of %d new instances healthy, %v%% of the traffic; old %s drained (stop them once their requests end), %d old serving",
			r.Step, r.Steps(), healthy, len(new), share, strings.Join(drained, ", "), serving)
	default:
		r.Message = fmt.Sprintf("step %d of %d: %d of %d new instances healthy (matching %s); waiting for their health checks", r.Step, r.Steps(), healthy, len(new), sel)
	}
	return moved
}

// stopInstances rolls a rolling rollout of a discovered upstream back.
func (r *Rollout) stopInstances(now time.Time, why string) {
	r.Drained, r.Share = nil, 0
	r.finish(now, RolledBack, fmt.Sprintf("stopped at step %d of %d and rolled back: %s; the new instances (%s) get no traffic, the old ones serve (stop the new ones)",
		r.Step, r.Steps(), why, selectorString(r.Spec.Selector)))
}

// selectorString writes a selector as sorted key=value pairs.
func selectorString(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// RollingTargets is a rolling rollout's target set now: the old targets
// not replaced yet and the new ones added so far, in that order; drain is
// the old target being drained ("" when none).
func (r *Rollout) RollingTargets() (addrs []string, drain string) {
	i := r.Step - 1
	if i < len(r.Stable) {
		addrs = append(addrs, r.Stable[i:]...)
		if r.Phase == "drain" {
			drain = r.Stable[i]
		}
	}
	return append(addrs, r.Canary[:min(i+1, len(r.Canary))]...), drain
}

// RollingNew is the new target the current step adds ("" when the step
// only removes an old one).
func (r *Rollout) RollingNew() string {
	if i := r.Step - 1; i < len(r.Canary) {
		return r.Canary[i]
	}
	return ""
}

func (r *Rollout) rollingMessage() string {
	if r.Phase == "drain" {
		i := r.Step - 1
		return fmt.Sprintf("step %d of %d: draining old target %s", r.Step, r.Steps(), r.Stable[i])
	}
	if n := r.RollingNew(); n != "" {
		return fmt.Sprintf("step %d of %d: waiting for new target %s to pass its health checks", r.Step, r.Steps(), n)
	}
	return fmt.Sprintf("step %d of %d", r.Step, r.Steps())
}

// AdvanceRolling moves a progressing rolling rollout on: in the gate
// phase, once the step's new target is healthy (newHealthy) its old
// counterpart starts draining; a new target still unhealthy after
// HealthTimeout stops the rollout and rolls it back. In the drain phase,
// once the old target has no request in flight (or DrainTimeout passed)
// it is removed and the next step begins; the last step completes the
// rollout. It reports whether the rollout moved.
func (r *Rollout) AdvanceRolling(now time.Time, newHealthy bool, oldInFlight int64) bool {
	if r.State != Progressing || r.Spec.Strategy != Rolling {
		return false
	}
	i := r.Step - 1
	switch r.Phase {
	case "drain":
		if i < len(r.Stable) && oldInFlight > 0 && now.Sub(r.PhaseStarted) < time.Duration(r.Spec.DrainTimeout) {
			return false
		}
		if r.Step >= r.Steps() {
			r.finish(now, Completed, fmt.Sprintf("completed: all %d new targets serve, the old ones are removed", len(r.Canary)))
			return true
		}
		r.Step++
		r.StepStarted, r.Phase, r.PhaseStarted, r.Updated = now, "gate", now, now
	default:
		if n := r.RollingNew(); n != "" && !newHealthy {
			if now.Sub(r.PhaseStarted) < time.Duration(r.Spec.HealthTimeout) {
				return false
			}
			r.finish(now, RolledBack, fmt.Sprintf("stopped at step %d of %d and rolled back: new target %s did not pass its health checks within %s",
				r.Step, r.Steps(), n, time.Duration(r.Spec.HealthTimeout)))
			return true
		}
		r.Phase, r.PhaseStarted, r.Updated = "drain", now, now
	}
	r.Message = r.rollingMessage()
	return true
}

// Evaluate judges the current step with both cohorts' windows at now. A
// failing canary is rolled back at once; a step is passed once its pause
// is over with enough canary requests, and passing the last promotes. It
// reports whether the rollout moved (a new step or a final state), after
// which the caller starts new windows and applies the new share.
func (r *Rollout) Evaluate(now time.Time, stable, canary SLI) bool {
	if r.State != Progressing {
		return false
	}
	a := r.Spec.Analysis
	switch r.Spec.Strategy {
	case AB, Rolling, Shadow:
		return false // an experiment ends by promote or rollback; rolling moves by AdvanceRolling
	case BlueGreen:
		// No stable traffic to compare with: only an absolute bound.
		if a.MaxErrorRate != nil && canary.Requests >= uint64(a.MinRequests) && canary.ErrorRate > *a.MaxErrorRate {
			r.Analysis = &Result{Stable: stable, Canary: canary, Verdict: "fail",
				Reason: fmt.Sprintf("new version error rate %.4g > max_error_rate %.4g", canary.ErrorRate, *a.MaxErrorRate)}
			r.finish(now, RolledBack, "rolled back by analysis: "+r.Analysis.Reason)
			return true
		}
		return false
	}
	res := a.Judge(stable, r.Baseline, canary)
	r.Analysis = &res
	r.Updated = now
	if res.Verdict == "fail" {
		r.finish(now, RolledBack, fmt.Sprintf("rolled back by analysis at step %d (%v%%): %s", r.Step, r.Percent(), res.Reason))
		return true
	}
	if now.Sub(r.StepStarted) < time.Duration(r.Spec.Pause) {
		return false
	}
	if res.Verdict != "pass" {
		r.Message = fmt.Sprintf("step %d of %d: %v%% to the canary; its pause is over, waiting for %s", r.Step, len(r.Spec.Steps), r.Percent(), res.Reason)
		return false
	}
	if stable.Requests >= uint64(a.MinRequests) {
		b := stable
		r.Baseline = &b
	}
	if r.Step >= len(r.Spec.Steps) {
		r.finish(now, Promoted, fmt.Sprintf("promoted: the canary passed analysis at all %d steps and is the stable set", len(r.Spec.Steps)))
		return true
	}
	r.Step++
	r.StepStarted = now
	r.Message = fmt.Sprintf("step %d of %d: %v%% to the canary", r.Step, len(r.Spec.Steps), r.Percent())
	return true
}

// Judge compares the canary's window with the stable's (or, when the
// stable had fewer than MinRequests, with baseline, which may be nil).
func (a Analysis) Judge(stable SLI, baseline *SLI, canary SLI) Result {
	res := Result{Stable: stable, Canary: canary}
	minReq := uint64(a.MinRequests)
	if canary.Requests < minReq {
		res.Verdict = "inconclusive"
		res.Reason = fmt.Sprintf("%d of %d canary requests", canary.Requests, minReq)
		return res
	}
	ref, refName := stable, "stable"
	if stable.Requests < minReq && baseline != nil {
		ref, refName = *baseline, "stable baseline"
	}
	refOK := ref.Requests >= minReq
	inc := DefaultMaxErrorRateIncrease
	if a.MaxErrorRateIncrease != nil {
		inc = *a.MaxErrorRateIncrease
	}
	bound, why := inc, fmt.Sprintf("0 (no stable traffic) + %.4g", inc)
	if refOK {
		bound, why = ref.ErrorRate+inc, fmt.Sprintf("%s %.4g + %.4g", refName, ref.ErrorRate, inc)
	}
	if a.MaxErrorRate != nil && *a.MaxErrorRate < bound {
		bound, why = *a.MaxErrorRate, fmt.Sprintf("max_error_rate %.4g", *a.MaxErrorRate)
	}
	if canary.ErrorRate > bound {
		res.Verdict = "fail"
		res.Reason = fmt.Sprintf("canary error rate %.4g > %s", canary.ErrorRate, why)
		return res
	}
	if refOK {
		minInc := float64(time.Duration(a.MinP99Increase).Microseconds()) / 1000
		limit := math.Max(ref.P99ms*a.MaxP99Ratio, ref.P99ms+minInc)
		if canary.P99ms > limit {
			res.Verdict = "fail"
			res.Reason = fmt.Sprintf("canary p99 %.4gms > %s p99 %.4gms x %.4g (and + %.4gms)", canary.P99ms, refName, ref.P99ms, a.MaxP99Ratio, minInc)
			return res
		}
	}
	res.Verdict = "pass"
	res.Reason = fmt.Sprintf("canary error rate %.4g <= %s; p99 %.4gms", canary.ErrorRate, why, canary.P99ms)
	return res
}

func (r *Rollout) finish(now time.Time, s State, msg string) {
	r.State = s
	r.Updated = now
	r.Message = msg
}

// Promote moves an active rollout on by hand, as Argo Rollouts' promote
// does: a canary before its last step goes to the next step (its pause
// and window start again, analysis goes on judging it; a paused canary
// progresses again); a canary at its last step, and every other strategy,
// ends with the new version as the stable set. full skips the remaining
// steps: the new version is the stable set now.
func (r *Rollout) Promote(now time.Time, full bool) error {
	if !r.Active() {
		return fmt.Errorf("promote: %w (state %s)", ErrNotActive, r.State)
	}
	if !full && r.Spec.Strategy == Canary && r.Step < len(r.Spec.Steps) {
		r.Step++
		r.State = Progressing
		r.StepStarted, r.Updated = now, now
		r.Message = fmt.Sprintf("promoted by an operator to step %d of %d: %v%% to the canary", r.Step, len(r.Spec.Steps), r.Percent())
		return nil
	}
	r.finish(now, Promoted, "promoted by an operator: the new version is the stable set")
	return nil
}

// Rollback ends an active rollout with the stable set serving everything.
func (r *Rollout) Rollback(now time.Time) error {
	if !r.Active() {
		return fmt.Errorf("rollback: %w (state %s)", ErrNotActive, r.State)
	}
	r.finish(now, RolledBack, "rolled back by an operator: the stable set serves all traffic")
	return nil
}

// Abort ends an active rollout as a rollback, marked aborted.
func (r *Rollout) Abort(now time.Time) error {
	if !r.Active() {
		return fmt.Errorf("abort: %w (state %s)", ErrNotActive, r.State)
	}
	r.finish(now, Aborted, "aborted by an operator: the stable set serves all traffic")
	return nil
}

// Pause holds a progressing rollout at its step (the share stays).
func (r *Rollout) Pause(now time.Time) error {
	if r.State != Progressing {
		return fmt.Errorf("pause: rollout is %s, not progressing", r.State)
	}
	r.State = Paused
	r.Updated = now
	r.Message = fmt.Sprintf("paused by an operator at step %d (%v%%)", r.Step, r.Percent())
	return nil
}

// Resume continues a paused rollout; the step's window and pause start
// again at now.
func (r *Rollout) Resume(now time.Time) error {
	if r.State != Paused {
		return fmt.Errorf("resume: rollout is %s, not paused", r.State)
	}
	r.State = Progressing
	r.Updated = now
	r.StepStarted = now
	r.PhaseStarted = now
	r.Message = fmt.Sprintf("resumed at step %d of %d (%v%%)", r.Step, r.Steps(), r.Percent())
	return nil
}

// Status is the admin API's view of a rollout (GET /admin/rollouts).
type Status struct {
	Upstream     string        `json:"upstream"`
	Strategy     string        `json:"strategy"`
	State        State         `json:"state"`
	Step         int           `json:"step"`
	Steps        int           `json:"steps"`
	CanaryWeight float64       `json:"canary_weight"`
	Stable       []string      `json:"stable"`
	Canary       []string      `json:"canary"`
	Selector     any           `json:"selector,omitempty"`
	Analysis     *Result       `json:"analysis"`
	Pause        string        `json:"pause,omitempty"`
	Phase        string        `json:"phase,omitempty"`
	Shadow       *ShadowReport `json:"shadow,omitempty"`
	Drained      []string      `json:"drained,omitempty"`
	Started      time.Time     `json:"started"`
	Updated      time.Time     `json:"updated"`
	Message      string        `json:"message"`
}

// Status returns the admin view; analysis is the live one for an active
// rollout (nil to show the last recorded).
func (r *Rollout) Status(live *Result) Status {
	s := Status{Upstream: r.Spec.Upstream, Strategy: r.Spec.Strategy, State: r.State, Step: r.Step, Steps: r.Steps(),
		CanaryWeight: r.Percent(), Stable: nonNil(r.Stable), Canary: nonNil(r.Canary), Analysis: r.Analysis,
		Started: r.Started, Updated: r.Updated, Message: r.Message, Shadow: r.Shadow, Drained: r.Drained}
	if len(r.Spec.Selector) > 0 {
		s.Selector = r.Spec.Selector
	}
	if r.Spec.Strategy == Canary {
		s.Pause = time.Duration(r.Spec.Pause).String()
	}
	if r.Active() {
		s.Phase = r.Phase
	}
	if live != nil {
		s.Analysis = live
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
