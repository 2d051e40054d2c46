package health

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Registry tracks services that report their own health by heartbeats: an
// address is alive while its last heartbeat's TTL has not run out. The zero
// value is ready to use. Safe for concurrent use.
//
// The owner applies it to targets, for example by calling Expired
// periodically and marking the returned addresses unhealthy, and marking a
// target healthy when Beat reports a new or returning address.
type Registry struct {
	mu       sync.Mutex
	deadline map[string]time.Time // address → end of its TTL
}

// Beat records a heartbeat from address at now, valid for ttl. It reports
// whether the address was not alive before (new, or back after expiring).
// It fails for an empty address or a ttl that is not positive.
func (r *Registry) Beat(address string, ttl time.Duration, now time.Time) (revived bool, err error) {
	var errs []error
	if address == "" {
		errs = append(errs, errors.New("heartbeat address \"\": expected host:port"))
	}
	if ttl <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat ttl %v: expected a positive duration", ttl))
	}
	if len(errs) > 0 {
		return false, errors.Join(errs...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deadline == nil {
		r.deadline = make(map[string]time.Time)
	}
	prev, ok := r.deadline[address]
	r.deadline[address] = now.Add(ttl)
	return !ok || !now.Before(prev), nil
}

// Alive reports whether address has a heartbeat whose TTL runs past now.
func (r *Registry) Alive(address string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.deadline[address]
	return ok && now.Before(d)
}

// Expired removes and returns, sorted, the addresses whose TTL ran out at
// or before now. Each expiry is reported once; a later Beat registers the
// address again.
func (r *Registry) Expired(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for addr, d := range r.deadline {
		if !now.Before(d) {
			out = append(out, addr)
			delete(r.deadline, addr)
		}
	}
	slices.Sort(out)
	return out
}

// Remove forgets address (a service deregistering) and reports whether it
// was known.
func (r *Registry) Remove(address string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.deadline[address]
	delete(r.deadline, address)
	return ok
}

// Addresses returns, sorted, the addresses alive at now (for the admin API).
func (r *Registry) Addresses(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.deadline))
	for addr, d := range r.deadline {
		if now.Before(d) {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}
