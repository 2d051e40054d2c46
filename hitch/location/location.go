package location

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
)

// Config is the location service's settings.
type Config struct {
	// DefaultRadiusMi is the search radius when a request names none, in
	// miles. Default 5.
	DefaultRadiusMi float64 `yaml:"default_radius_mi"`
	// MaxRadiusMi is the largest radius a request may ask for; larger is
	// 400. Default 5.
	MaxRadiusMi float64 `yaml:"max_radius_mi"`
	// MaxResults is the most drivers one search returns (the nearest);
	// also the largest `limit` a request may ask for. Default 50.
	MaxResults int `yaml:"max_results"`
	// MaxAge hides positions reported longer ago than this; they are
	// forgotten soon after. Default 2m.
	MaxAge time.Duration `yaml:"max_age"`
	// CellMi is the side of the in-memory index's grid cells, in miles.
	// Default 0.5.
	CellMi float64 `yaml:"cell_mi"`
	// PublishBuffer is how many updates may wait for the background
	// publisher; more are dropped (at most once) and counted. Default 8192.
	PublishBuffer int `yaml:"publish_buffer"`
	// MaxBodyBytes bounds a request body; larger is 413. Default 4096.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Redis, when set (redis://[:password@]host:port/db), keeps the
	// positions in a Redis geo set shared by every replica instead of an
	// in-memory index per replica. Default: unset (in memory).
	Redis string `yaml:"redis"`
	// RedisKey prefixes the Redis keys (KEY:geo, KEY:seen). Default
	// "hitch:location".
	RedisKey string `yaml:"redis_key"`
	// Replica names this replica in the "origin" header of what it
	// publishes, so it skips its own updates. Default: a random id.
	Replica string `yaml:"replica"`

	Logger *slog.Logger `yaml:"-"` // default: discard
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.DefaultRadiusMi == 0 {
		c.DefaultRadiusMi = 5
	}
	if c.MaxRadiusMi == 0 {
		c.MaxRadiusMi = 5
	}
	if c.MaxResults == 0 {
		c.MaxResults = 50
	}
	if c.MaxAge == 0 {
		c.MaxAge = 2 * time.Minute
	}
	if c.CellMi == 0 {
		c.CellMi = 0.5
	}
	if c.PublishBuffer == 0 {
		c.PublishBuffer = 8192
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4096
	}
	if c.RedisKey == "" {
		c.RedisKey = "hitch:location"
	}
	if c.Replica == "" {
		c.Replica = message.NewID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate reports every bad setting, each naming its key.
func (c Config) Validate() error {
	var errs []error
	pos := func(key string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			errs = append(errs, config.Fieldf(key, "want a positive number of miles, got %v", v))
		}
	}
	pos("default_radius_mi", c.DefaultRadiusMi)
	pos("max_radius_mi", c.MaxRadiusMi)
	pos("cell_mi", c.CellMi)
	if c.DefaultRadiusMi > c.MaxRadiusMi {
		errs = append(errs, config.Fieldf("default_radius_mi", "%v is above max_radius_mi %v", c.DefaultRadiusMi, c.MaxRadiusMi))
	}
	if c.MaxResults < 1 || c.MaxResults > 10000 {
		errs = append(errs, config.Fieldf("max_results", "want 1 to 10000, got %d", c.MaxResults))
	}
	if c.MaxAge <= 0 {
		errs = append(errs, config.Fieldf("max_age", "want a positive duration, got %s", c.MaxAge))
	}
	if c.PublishBuffer < 1 {
		errs = append(errs, config.Fieldf("publish_buffer", "want at least 1, got %d", c.PublishBuffer))
	}
	if c.MaxBodyBytes < 64 {
		errs = append(errs, config.Fieldf("max_body_bytes", "want at least 64, got %d", c.MaxBodyBytes))
	}
	return errors.Join(errs...)
}

// positions is where the service keeps the drivers' positions: an
// in-memory geo.Index (per replica) or Redis (shared).
type positions interface {
	update(ctx context.Context, id string, p geo.Point, at time.Time) error
	nearby(ctx context.Context, q geo.Query, dst []geo.Hit) ([]geo.Hit, error)
	prune(ctx context.Context, before time.Time) (int, error)
	shared() bool // every replica sees the same positions (no need to apply the topic)
	ping(ctx context.Context) error
	close() error
}

// Service is the location service. Safe for concurrent use.
type Service struct {
	cfg Config
	bus message.Backend
	pos positions
	out chan broker.Message

	published, dropped, applied atomic.Int64
}

// Stats counts what the service published, dropped and applied.
type Stats struct {
	Published int64 // updates handed to the broker
	Dropped   int64 // updates not published (buffer full or broker error)
	Applied   int64 // other replicas' updates applied from the topic
}

// Stats returns the counters.
func (s *Service) Stats() Stats {
	return Stats{Published: s.published.Load(), Dropped: s.dropped.Load(), Applied: s.applied.Load()}
}

// New opens the service. db is not used (nothing about a position
// outlives the next report) and may be nil; bus is required (the live
// topic). With cfg.Redis it connects to Redis and checks it answers.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	_ = db
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("location: config: %w", err)
	}
	if bus == nil {
		return nil, errors.New("location: a message bus is required (the live topic " + hitch.TopicLocations + ")")
	}
	s := &Service{cfg: cfg, bus: bus, out: make(chan broker.Message, cfg.PublishBuffer)}
	if cfg.Redis != "" {
		r, err := openRedis(ctx, cfg.Redis, cfg.RedisKey)
		if err != nil {
			return nil, err
		}
		s.pos = r
	} else {
		s.pos = memory{geo.NewIndex(cfg.CellMi)}
	}
	return s, nil
}

// Close releases the Redis connection, if any.
func (s *Service) Close() error { return s.pos.close() }

// Run subscribes to the live topic and applies the other replicas'
// updates, publishes this replica's updates in batches, and forgets
// positions older than MaxAge, until ctx ends; then it returns nil.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{}, 3)
	go func() { s.publishLoop(ctx); done <- struct{}{} }()
	go func() { s.subscribeLoop(ctx); done <- struct{}{} }()
	go func() { s.pruneLoop(ctx); done <- struct{}{} }()
	for i := 0; i < 3; i++ {
		<-done
	}
	return nil
}

const topic = "topic:" + hitch.TopicLocations

// enqueue hands an update to the publisher without waiting.
func (s *Service) enqueue(id string, p geo.Point, at time.Time) {
	m, err := hitch.Event(hitch.KindLocation, message.NewID(), id,
		hitch.DriverLocation{DriverID: id, Point: hitch.Point{Lat: p.Lat, Lon: p.Lon}, At: at})
	if err != nil {
		s.dropped.Add(1)
		return
	}
	m.Headers["origin"] = s.cfg.Replica
	select {
	case s.out <- m:
	default:
		s.dropped.Add(1)
	}
}

func (s *Service) publishLoop(ctx context.Context) {
	batch := make([]broker.Message, 0, 256)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.out:
			batch = append(batch[:0], m)
		fill:
			for len(batch) < cap(batch) {
				select {
				case m := <-s.out:
					batch = append(batch, m)
				default:
					break fill
				}
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.bus.Publish(pctx, topic, batch...)
			cancel()
			if err != nil {
				s.dropped.Add(int64(len(batch)))
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("location: publishing updates (dropped: at most once)", "count", len(batch), "err", err)
				}
				continue
			}
			s.published.Add(int64(len(batch)))
		}
	}
}

func (s *Service) subscribeLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.bus.Subscribe(ctx, topic, message.SubscribeOptions{}, s.applyRemote)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("location: live topic subscription ended; resubscribing", "topic", topic, "err", err)
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyRemote applies another replica's update from the live topic.
func (s *Service) applyRemote(d *message.Delivery) {
	defer d.Ack(context.Background()) // a topic's ack does nothing; settle anyway
	if d.Headers["kind"] != hitch.KindLocation || d.Headers["origin"] == s.cfg.Replica || s.pos.shared() {
		return
	}
	var l hitch.DriverLocation
	if err := hitch.Decode(hitch.KindLocation, d.Body, &l); err != nil || l.DriverID == "" || l.Point.Validate() != nil || l.At.IsZero() {
		return
	}
	if err := s.pos.update(context.Background(), l.DriverID, geo.Point{Lat: l.Lat, Lon: l.Lon}, l.At); err == nil {
		s.applied.Add(1)
	}
}

func (s *Service) pruneLoop(ctx context.Context) {
	t := time.NewTicker(max(s.cfg.MaxAge/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.pos.prune(ctx, time.Now().Add(-s.cfg.MaxAge)); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("location: forgetting old positions", "err", err)
			}
		}
	}
}

// memory is the in-memory index of one replica.
type memory struct{ ix *geo.Index }

func (m memory) update(_ context.Context, id string, p geo.Point, at time.Time) error {
	m.ix.Update(id, p, at.UnixNano())
	return nil
}
func (m memory) nearby(_ context.Context, q geo.Query, dst []geo.Hit) ([]geo.Hit, error) {
	return m.ix.Nearby(q, dst), nil
}
func (m memory) prune(_ context.Context, before time.Time) (int, error) {
	return m.ix.Prune(before.UnixNano()), nil
}
func (memory) shared() bool               { return false }
func (memory) ping(context.Context) error { return nil }
func (memory) close() error               { return nil }
