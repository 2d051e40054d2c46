package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/wal"
)

// FileConfig is the broker's YAML configuration file. Unknown keys are
// errors.
//
//	data: /var/lib/switchyard/broker   # data directory (the --data flag wins)
//	fsync: batch                       # always | batch | interval:100ms | never
//	segment_bytes: 67108864
//	queues:
//	  orders:
//	    visibility_timeout: 30s
//	    max_deliveries: 5
//	    max_length: 10000
//	    overflow: block
//	topics:
//	  rides:
//	    queues: [orders]     # durable fan-out into these queues
//	streams:
//	  locations:
//	    max_age: 24h
type FileConfig struct {
	// Dir is the data directory. Default: the --data flag.
	Dir string `yaml:"data"`
	// Fsync is the fsync policy. Default batch.
	Fsync wal.SyncPolicy `yaml:"fsync"`
	// SegmentBytes is the log segment size in bytes. Default 64 MiB.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// Preallocate extends log segment files this many bytes ahead of their
	// data (see Config.Preallocate). Default 0 (off).
	Preallocate int64 `yaml:"preallocate"`
	// Queues declares queues, by name, created or updated on start.
	Queues map[string]QueueConfig `yaml:"queues"`
	// Topics declares pub/sub topics, by name.
	Topics map[string]TopicConfig `yaml:"topics"`
	// Streams declares replayable streams, by name.
	Streams map[string]StreamConfig `yaml:"streams"`
}

// LoadFile reads and validates a broker configuration file. Every error
// names the file and, for settings, the key path (queues.NAME.FIELD).
func LoadFile(path string) (FileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("reading broker config: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses the YAML of a broker configuration file named path.
func ParseFile(path string, data []byte) (FileConfig, error) {
	var fc FileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return FileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := fc.Validate(); err != nil {
		return FileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return fc, nil
}

// Validate reports every problem, each prefixed by its key path.
func (fc FileConfig) Validate() error {
	var errs []error
	if err := checkSegmentBytes("segment_bytes", fc.SegmentBytes); err != nil {
		errs = append(errs, err)
	}
	if fc.Preallocate < 0 {
		errs = append(errs, fmt.Errorf("preallocate: %d must not be negative", fc.Preallocate))
	}
	for _, name := range sortedKeys(fc.Queues) {
		if !ValidName(name) {
			errs = append(errs, fmt.Errorf("queues.%s: invalid queue name", name))
		}
		if err := fc.Queues[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("queues."+name, err))
		}
	}
	for _, name := range sortedKeys(fc.Topics) {
		if !ValidName(name) {
			errs = append(errs, fmt.Errorf("topics.%s: invalid topic name", name))
		}
		if err := fc.Topics[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("topics."+name, err))
		}
	}
	for _, name := range sortedKeys(fc.Streams) {
		if !ValidName(name) {
			errs = append(errs, fmt.Errorf("streams.%s: invalid stream name", name))
		}
		if err := fc.Streams[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("streams."+name, err))
		}
	}
	return errors.Join(errs...)
}

// prefixErrs prefixes each joined error with the key path.
func prefixErrs(path string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s.%w", path, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Apply declares the file's queues, topics and streams on b.
func (fc FileConfig) Apply(b *Broker) error {
	var errs []error
	for _, name := range sortedKeys(fc.Queues) {
		if err := b.Declare(name, fc.Queues[name]); err != nil {
			errs = append(errs, fmt.Errorf("queues.%s: %w", name, err))
		}
	}
	for _, name := range sortedKeys(fc.Topics) {
		if err := b.DeclareTopic(name, fc.Topics[name]); err != nil {
			errs = append(errs, fmt.Errorf("topics.%s: %w", name, err))
		}
	}
	for _, name := range sortedKeys(fc.Streams) {
		if err := b.DeclareStream(name, fc.Streams[name]); err != nil {
			errs = append(errs, fmt.Errorf("streams.%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Repair repairs the logs in the data directory dir (the queue log and
// every stream's log; see wal.Repair) with no broker running on it (it
// takes the directory lock): damaged records are skipped, everything
// intact is kept, a torn tail is cut. It returns what was dropped.
func Repair(dir string) ([]wal.Damage, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := wal.LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	logs := []string{filepath.Join(dir, "log")}
	streams, _ := filepath.Glob(filepath.Join(dir, "streams", "*"))
	sort.Strings(streams)
	logs = append(logs, streams...)
	var all []wal.Damage
	for _, d := range logs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		dmg, err := wal.Repair(d, wal.Options{MaxRecordBytes: 1 << 30})
		all = append(all, dmg...)
		if err != nil {
			return all, fmt.Errorf("repairing %q: %w", d, err)
		}
	}
	return all, nil
}
