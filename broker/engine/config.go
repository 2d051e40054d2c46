package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/wal"
)

// maxRecordBytes bounds a log record: a message of MaxMessageSizeLimit
// plus its encoding (see Message.Size).
const maxRecordBytes = 4*broker.MaxMessageSizeLimit + 1<<20

// Config configures a Broker.
type Config struct {
	// Dir is the data directory (the log and metadata). Required.
	Dir string `json:"data" yaml:"data"`
	// Fsync is the log's fsync policy: always, batch (the default: group
	// commit), interval:DURATION or never.
	Fsync wal.SyncPolicy `json:"fsync" yaml:"fsync"`
	// SegmentBytes is the log segment size in bytes. Default 64 MiB.
	SegmentBytes int64 `json:"segment_bytes" yaml:"segment_bytes"`
	// Preallocate, if positive, extends log segment files this many bytes
	// ahead of their data (see wal.Options.Preallocate: lower median fsync
	// latency, worse p99.9 on ext4). Default 0 (off).
	Preallocate int64 `json:"preallocate" yaml:"preallocate"`
	// CompactInterval is how often fully consumed log segments are
	// deleted and expired messages swept. Default 5s.
	CompactInterval broker.Duration `json:"compact_interval" yaml:"compact_interval"`
	// TickInterval is the resolution of delays and visibility timeouts.
	// Default 20ms.
	TickInterval broker.Duration `json:"tick_interval" yaml:"tick_interval"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `json:"-" yaml:"-"`
	// Metrics, if set, receives the broker's Prometheus metrics (queue,
	// topic and stream counters and gauges, fsync and publish-confirm
	// histograms; see metrics.go): Open registers one collector with it and
	// Close unregisters it, so a registry serves one open broker at a time.
	// Default none (counting still happens, nothing is timed or exported).
	Metrics prometheus.Registerer `json:"-" yaml:"-"`
	// Tracer, if set, records spans of the messages that carry W3C trace
	// context in their headers: publish and deliver (see trace.go).
	// Default none: no spans, nothing allocated for them.
	Tracer trace.Tracer `json:"-" yaml:"-"`
	// WriteHook is fault injection for tests (wal.Options.WriteHook) on
	// every log of the broker: e.g. return syscall.ENOSPC to simulate a
	// full disk. Default none.
	WriteHook func(path string, off int64, n int) error `json:"-" yaml:"-"`
}

func (c Config) withDefaults() Config {
	if c.CompactInterval == 0 {
		c.CompactInterval = broker.Duration(5 * time.Second)
	}
	if c.TickInterval == 0 {
		c.TickInterval = broker.Duration(20 * time.Millisecond)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("data: directory required"))
	}
	if err := broker.CheckSegmentBytes("segment_bytes", c.SegmentBytes); err != nil {
		errs = append(errs, err)
	}
	if c.Preallocate < 0 {
		errs = append(errs, fmt.Errorf("preallocate %d: must not be negative", c.Preallocate))
	}
	if c.CompactInterval < 0 {
		errs = append(errs, fmt.Errorf("compact_interval %s: must not be negative", c.CompactInterval.Std()))
	}
	if c.TickInterval < 0 {
		errs = append(errs, fmt.Errorf("tick_interval %s: must not be negative", c.TickInterval.Std()))
	}
	return errors.Join(errs...)
}
