// Package registry is the service registry behind `switchyard registry`:
// instances register with a TTL and renew it with heartbeats, an instance
// that stops renewing is removed when its TTL runs out, and every change
// bumps an index that watchers block on (HTTP long-poll, see Handler).
//
// The state is kept in a SQLite file (registry.db in WAL mode) so it
// survives restarts; after a restart every instance keeps the TTL it had
// left when the registry stopped, rather than expiring at once or living
// forever.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
)

// Errors the registry returns; the HTTP API maps them to status codes.
var (
	// ErrNotFound: no such instance (a heartbeat for it must register again).
	ErrNotFound = errors.New("instance not registered")
	// ErrInvalid wraps validation problems of a request.
	ErrInvalid = errors.New("invalid request")
	// ErrFull: the registry holds Config.MaxInstances instances already.
	ErrFull = errors.New("registry full")
	// ErrBusy: Config.MaxWatchers long-polls are waiting already.
	ErrBusy = errors.New("too many watchers")
	// ErrClosed: the registry was closed.
	ErrClosed = errors.New("registry closed")
	// ErrLeaseMismatch: the instance is live and registered under another
	// lease than the one presented (none, or a wrong one): only its
	// registrant may replace, renew, drain or deregister it until it
	// expires.
	ErrLeaseMismatch = errors.New("instance registered under another lease")
)

// AnyLease, passed as the lease of RegisterLease, HeartbeatLease,
// SetStateLease or DeregisterLease, skips the ownership check: what the
// in-process methods Register, Heartbeat, SetState and Deregister do
// (the caller is the registry's own process, not a remote registrant).
// The HTTP API never passes it.
const AnyLease = "\x00any"

// Defaults of Config.
const (
	DefaultMaxInstances = 10000
	DefaultMaxWatchers  = 10000
	DefaultMaxBytes     = 64 << 20
	DefaultReapInterval = 100 * time.Millisecond
	DefaultClockPersist = time.Second
)

// Config configures a Registry. The zero value is an in-memory registry
// with defaults.
type Config struct {
	// Dir is the data directory; the registry keeps registry.db (and its
	// WAL) there. Empty: in memory only, nothing survives a restart.
	Dir string
	// MaxInstances caps the registered instances over all services.
	// Default 10000.
	MaxInstances int
	// MaxBytes caps the bytes the registered instances hold (names,
	// address, tags, metadata, health URL, plus 256 per instance); over
	// it a new or larger registration gets ErrFull. Default 64 MiB (a
	// registration may be up to 64 KiB, so MaxInstances alone would let
	// 10,000 of them hold 640 MiB, copied again for every watcher).
	MaxBytes int64
	// MaxWatchers caps the long-polls waiting at once; over it a watch
	// is answered 503 (the client retries with backoff). Default 10000.
	MaxWatchers int
	// ReapInterval is how often expired instances are looked for; an
	// instance is removed at most this long after its TTL ran out.
	// Default 100ms.
	ReapInterval time.Duration
	// ClockPersist is how often the registry records the time in its
	// file while idle, so that a restart knows how much TTL each instance
	// had left. Default 1s.
	ClockPersist time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives expiries and store errors. Default: discarded.
	Logger *slog.Logger
}

// Registry holds the registered instances. Create it with Open; Close it.
// Safe for concurrent use.
type Registry struct {
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	store *store // nil in memory

	mu       sync.Mutex
	services map[string]*service
	count    int
	bytes    int64 // instanceSize of every instance
	index    uint64
	waiting  map[string]*waitSet // services with long-polls parked in Wait
	closed   bool

	watchers atomic.Int64 // long-polls waiting in Wait
	parked   atomic.Int64 // of those, parked on their service's channel (tests)
	wakeups  atomic.Int64 // times a parked long-poll was woken (tests)

	stop chan struct{}
	done chan struct{}
}

// waitSet is the long-polls parked on one service name: ch is closed
// (and replaced) when that service changes, so a change wakes only its
// own watchers. n counts them; the set goes when the last one leaves.
type waitSet struct {
	ch chan struct{}
	n  int
}

type service struct {
	index     uint64 // registry index of the service's last change
	instances map[string]*discovery.Instance
	leases    map[string]leaseHash // id → SHA-256 of its lease; absent: unowned (stored before leases)
}

// leaseHash is the SHA-256 of an instance's lease: the registry keeps
// (and stores) only the hash, so its file does not hold the secrets.
type leaseHash [32]byte

func hashLease(lease string) leaseHash { return sha256.Sum256([]byte(lease)) }

// newLease returns a fresh random lease: 32 bytes, URL-safe base64.
func newLease() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkLeaseLocked reports ErrLeaseMismatch unless lease may act on the
// live instance id of s.
func (s *service) checkLeaseLocked(name, id, lease string) error {
	if lease == AnyLease {
		return nil
	}
	h, owned := s.leases[id]
	if !owned {
		return nil
	}
	got := hashLease(lease)
	if lease == "" || subtle.ConstantTimeCompare(got[:], h[:]) != 1 {
		return fmt.Errorf("%w: service %q instance %q: present the lease its registration returned (header %s), or register another id", ErrLeaseMismatch, name, clip(id), LeaseHeader)
	}
	return nil
}

// Open loads the registry from cfg.Dir (creating it) and starts removing
// expired instances in the background until Close.
func Open(cfg Config) (*Registry, error) {
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = DefaultReapInterval
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxWatchers <= 0 {
		cfg.MaxWatchers = DefaultMaxWatchers
	}
	if cfg.ClockPersist <= 0 {
		cfg.ClockPersist = DefaultClockPersist
	}
	r := &Registry{cfg: cfg, now: cfg.Now, log: cfg.Logger, services: map[string]*service{},
		waiting: map[string]*waitSet{}, stop: make(chan struct{}), done: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		st, loaded, index, err := openStore(cfg.Dir, r.now())
		if err != nil {
			return nil, err
		}
		r.store = st
		r.index = index
		for _, li := range loaded {
			in := li.in
			s := r.serviceLocked(in.Service)
			s.instances[in.ID] = in
			if li.owned {
				s.leases[in.ID] = li.lease
			}
			s.index = index
			r.count++
			r.bytes += instanceSize(in)
		}
	}
	go r.reapLoop()
	return r, nil
}

// Close stops the background work, records the time (so a restart gives
// each instance the TTL it had left) and closes the file. Watchers blocked
// in Wait return ErrClosed.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, ws := range r.waiting {
		close(ws.ch)
	}
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	if r.store == nil {
		return nil
	}
	err := r.store.setClock(r.now())
	return errors.Join(err, r.store.close())
}

func (r *Registry) serviceLocked(name string) *service {
	s := r.services[name]
	if s == nil {
		s = &service{instances: map[string]*discovery.Instance{}, leases: map[string]leaseHash{}}
		r.services[name] = s
	}
	return s
}

// bumpLocked records a change of service s: a new index, and a wake-up
// for the watchers of that service (only).
func (r *Registry) bumpLocked(name string, s *service) {
	r.index++
	s.index = r.index
	if len(s.instances) == 0 {
		delete(r.services, name)
	}
	if ws := r.waiting[name]; ws != nil {
		close(ws.ch)
		ws.ch = make(chan struct{})
	}
}

// Register adds or replaces an instance (state up, TTL from now) without
// an ownership check: RegisterLease with AnyLease.
func (r *Registry) Register(reg discovery.Registration) (discovery.Instance, error) {
	return r.RegisterLease(reg, AnyLease)
}

// RegisterLease adds an instance, or replaces a live one registered
// under lease. A new instance (or one whose TTL ran out) gets a new
// lease, returned in Instance.Lease: its heartbeats, state changes,
// deregistration and re-registrations must present it. A live instance
// registered under another lease is ErrLeaseMismatch; replacing it keeps
// its lease (Instance.Lease is the lease presented).
func (r *Registry) RegisterLease(reg discovery.Registration, lease string) (discovery.Instance, error) {
	reg = reg.WithDefaults()
	if err := reg.Validate(); err != nil {
		return discovery.Instance{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	reg.Tags = slices.Clone(reg.Tags)
	meta := make(map[string]string, len(reg.Meta))
	for k, v := range reg.Meta {
		meta[k] = v
	}
	reg.Meta = meta
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return discovery.Instance{}, ErrClosed
	}
	s := r.serviceLocked(reg.Service)
	old, exists := s.instances[reg.ID]
	now := r.now()
	hash, owned := s.leases[reg.ID]
	given := ""
	if exists && now.Before(old.Expires) && owned {
		if err := s.checkLeaseLocked(reg.Service, reg.ID, lease); err != nil {
			if len(s.instances) == 0 {
				delete(r.services, reg.Service)
			}
			return discovery.Instance{}, err
		}
		if lease != AnyLease {
			given = lease
		}
	} else {
		given = newLease()
		hash = hashLease(given)
	}
	in := &discovery.Instance{Registration: reg, State: discovery.StateUp, Expires: now.Add(reg.TTL.Std())}
	size := instanceSize(in)
	var oldSize int64
	if exists {
		oldSize = instanceSize(old)
	}
	if !exists && r.count >= r.cfg.MaxInstances || size > oldSize && r.bytes-oldSize+size > r.cfg.MaxBytes {
		if len(s.instances) == 0 {
			delete(r.services, reg.Service)
		}
		return discovery.Instance{}, fmt.Errorf("%w: %d instances registered holding %d bytes (limits %d instances, %d bytes)", ErrFull, r.count, r.bytes, r.cfg.MaxInstances, r.cfg.MaxBytes)
	}
	// The store is written under the lock: it is the order of changes.
	if r.store != nil {
		if err := r.store.put(in, hash[:], r.index+1, now); err != nil {
			if len(s.instances) == 0 {
				delete(r.services, reg.Service)
			}
			return discovery.Instance{}, err
		}
	}
	if !exists {
		r.count++
	}
	r.bytes += size - oldSize
	s.instances[reg.ID] = in
	s.leases[reg.ID] = hash
	r.bumpLocked(reg.Service, s)
	r.log.Info("instance registered", "service", reg.Service, "id", reg.ID, "address", reg.Address, "ttl", reg.TTL.String())
	out := *in
	out.Lease = given
	return out, nil
}

func (r *Registry) lookupLocked(name, id string) (*service, *discovery.Instance, error) {
	if r.closed {
		return nil, nil, ErrClosed
	}
	s := r.services[name]
	if s == nil || s.instances[id] == nil {
		return nil, nil, fmt.Errorf("%w: service %q instance %q", ErrNotFound, name, id)
	}
	return s, s.instances[id], nil
}

// Heartbeat renews an instance's TTL from now. ErrNotFound means the
// instance expired or was never registered: register it again. No
// ownership check: HeartbeatLease with AnyLease.
func (r *Registry) Heartbeat(name, id string) (discovery.Instance, error) {
	return r.HeartbeatLease(name, id, AnyLease)
}

// HeartbeatLease is Heartbeat by the holder of lease (ErrLeaseMismatch
// for another).
func (r *Registry) HeartbeatLease(name, id, lease string) (discovery.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, in, err := r.lookupLocked(name, id)
	if err == nil {
		err = s.checkLeaseLocked(name, id, lease)
	}
	if err != nil {
		return discovery.Instance{}, err
	}
	now := r.now()
	expires := now.Add(in.TTL.Std())
	if r.store != nil {
		if err := r.store.renew(name, id, expires, now); err != nil {
			return discovery.Instance{}, err
		}
	}
	in.Expires = expires
	return *in, nil
}

// SetState drains (StateDraining) or undrains (StateUp) an instance,
// without ownership check: SetStateLease with AnyLease.
func (r *Registry) SetState(name, id string, state discovery.State) (discovery.Instance, error) {
	return r.SetStateLease(name, id, state, AnyLease)
}

// SetStateLease is SetState by the holder of lease (ErrLeaseMismatch for
// another).
func (r *Registry) SetStateLease(name, id string, state discovery.State, lease string) (discovery.Instance, error) {
	if state != discovery.StateUp && state != discovery.StateDraining {
		return discovery.Instance{}, fmt.Errorf("%w: state %q: expected %q or %q", ErrInvalid, clip(string(state)), discovery.StateUp, discovery.StateDraining)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, in, err := r.lookupLocked(name, id)
	if err == nil {
		err = s.checkLeaseLocked(name, id, lease)
	}
	if err != nil {
		return discovery.Instance{}, err
	}
	if in.State == state {
		return *in, nil
	}
	next := *in
	next.State = state
	if r.store != nil {
		var lease []byte
		if h, owned := s.leases[id]; owned {
			lease = h[:]
		}
		if err := r.store.put(&next, lease, r.index+1, r.now()); err != nil {
			return discovery.Instance{}, err
		}
	}
	*in = next
	r.bumpLocked(name, s)
	r.log.Info("instance state changed", "service", name, "id", id, "state", string(state))
	return *in, nil
}

// Deregister removes an instance (graceful shutdown), without ownership
// check: DeregisterLease with AnyLease.
func (r *Registry) Deregister(name, id string) error {
	return r.DeregisterLease(name, id, AnyLease)
}

// DeregisterLease is Deregister by the holder of lease
// (ErrLeaseMismatch for another).
func (r *Registry) DeregisterLease(name, id, lease string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, _, err := r.lookupLocked(name, id)
	if err == nil {
		err = s.checkLeaseLocked(name, id, lease)
	}
	if err != nil {
		return err
	}
	if r.store != nil {
		if err := r.store.remove(name, []string{id}, r.index+1, r.now()); err != nil {
			return err
		}
	}
	r.bytes -= instanceSize(s.instances[id])
	delete(s.instances, id)
	delete(s.leases, id)
	r.count--
	r.bumpLocked(name, s)
	r.log.Info("instance deregistered", "service", name, "id", id)
	return nil
}

// Reap removes the instances whose TTL ran out at or before now and
// returns how many it removed. The background loop calls it every
// ReapInterval; tests with a manual clock call it themselves.
func (r *Registry) Reap() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	now := r.now()
	n := 0
	for name, s := range r.services {
		var gone []string
		for id, in := range s.instances {
			if !now.Before(in.Expires) {
				gone = append(gone, id)
			}
		}
		if len(gone) == 0 {
			continue
		}
		if r.store != nil {
			if err := r.store.remove(name, gone, r.index+1, now); err != nil {
				r.log.Error("removing expired instances", "service", name, "error", err.Error())
				continue
			}
		}
		for _, id := range gone {
			r.log.Warn("instance expired", "service", name, "id", id, "address", s.instances[id].Address)
			r.bytes -= instanceSize(s.instances[id])
			delete(s.instances, id)
			delete(s.leases, id)
		}
		r.count -= len(gone)
		n += len(gone)
		r.bumpLocked(name, s)
	}
	return n
}

func (r *Registry) reapLoop() {
	defer close(r.done)
	tick := time.NewTicker(r.cfg.ReapInterval)
	defer tick.Stop()
	lastClock := r.now()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		r.Reap()
		if now := r.now(); r.store != nil && now.Sub(lastClock) >= r.cfg.ClockPersist {
			lastClock = now
			r.mu.Lock()
			if !r.closed {
				if err := r.store.setClock(now); err != nil {
					r.log.Error("recording the clock", "error", err.Error())
				}
			}
			r.mu.Unlock()
		}
	}
}

// Snapshot returns a service's instances (sorted by id) and index.
func (r *Registry) Snapshot(name string) discovery.ServiceSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked(name)
}

func (r *Registry) snapshotLocked(name string) discovery.ServiceSnapshot {
	snap := discovery.ServiceSnapshot{Service: name, Instances: []discovery.Instance{}}
	s := r.services[name]
	if s == nil {
		return snap
	}
	snap.Index = s.index
	for _, in := range s.instances {
		c := *in
		c.Tags = slices.Clone(in.Tags)
		c.Meta = make(map[string]string, len(in.Meta))
		for k, v := range in.Meta {
			c.Meta[k] = v
		}
		snap.Instances = append(snap.Instances, c)
	}
	slices.SortFunc(snap.Instances, func(a, b discovery.Instance) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return snap
}

// Wait blocks until the service's index differs from index (a change
// since the caller's snapshot) or ctx ends, and returns the snapshot then.
// When ctx ends first it returns the unchanged snapshot and no error: a
// long-poll that timed out.
func (r *Registry) Wait(ctx context.Context, name string, index uint64) (discovery.ServiceSnapshot, error) {
	if r.watchers.Add(1) > int64(r.cfg.MaxWatchers) {
		r.watchers.Add(-1)
		return discovery.ServiceSnapshot{}, fmt.Errorf("%w: %d waiting", ErrBusy, r.cfg.MaxWatchers)
	}
	defer r.watchers.Add(-1)
	r.mu.Lock()
	ws := r.waiting[name]
	if ws == nil {
		ws = &waitSet{ch: make(chan struct{})}
		r.waiting[name] = ws
	}
	ws.n++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if ws.n--; ws.n == 0 && r.waiting[name] == ws {
			delete(r.waiting, name)
		}
		r.mu.Unlock()
	}()
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return discovery.ServiceSnapshot{}, ErrClosed
		}
		snap := r.snapshotLocked(name)
		ch := ws.ch
		r.mu.Unlock()
		if snap.Index != index {
			return snap, nil
		}
		r.parked.Add(1)
		select {
		case <-ch:
			r.parked.Add(-1)
			r.wakeups.Add(1)
		case <-ctx.Done():
			r.parked.Add(-1)
			return snap, nil
		}
	}
}

// ServiceInfo summarises one service for listings.
type ServiceInfo struct {
	// Name is the service name.
	Name string `json:"name"`
	// Index is the registry index of the service's last change.
	Index uint64 `json:"index"`
	// Instances counts the registered instances, Up those not draining.
	Instances int `json:"instances"`
	Up        int `json:"up"`
}

// Services lists the services with at least one instance, sorted by name.
func (r *Registry) Services() []ServiceInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ServiceInfo, 0, len(r.services))
	for name, s := range r.services {
		si := ServiceInfo{Name: name, Index: s.index, Instances: len(s.instances)}
		for _, in := range s.instances {
			if in.State == discovery.StateUp {
				si.Up++
			}
		}
		out = append(out, si)
	}
	slices.SortFunc(out, func(a, b ServiceInfo) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// instanceSize is what an instance counts against Config.MaxBytes: its
// strings plus a fixed 256 for the rest.
func instanceSize(in *discovery.Instance) int64 {
	n := 256 + len(in.Service) + len(in.ID) + len(in.Address) + len(in.HealthURL)
	for _, t := range in.Tags {
		n += len(t) + 16
	}
	for k, v := range in.Meta {
		n += len(k) + len(v) + 32
	}
	return int64(n)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
