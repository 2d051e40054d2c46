package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/config"
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
	Queues map[string]broker.QueueConfig `yaml:"queues"`
	// Topics declares pub/sub topics, by name.
	Topics map[string]broker.TopicConfig `yaml:"topics"`
	// Streams declares replayable streams, by name.
	Streams map[string]broker.StreamConfig `yaml:"streams"`
	// TLS serves the native and HTTP listeners over TLS. Default none
	// (plain TCP); the --tls-* flags win.
	TLS *TLSConfig `yaml:"tls"`
	// Auth lists users and their permissions; every connection and
	// request must then log in. Default none: the broker is open to
	// whoever reaches it, and refuses to listen on a non-loopback address.
	Auth *access.Config `yaml:"auth"`

	src *config.Source // where each key is, when parsed from a file
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

// ParseFile parses the YAML of a broker configuration file named path
// (with config.DecodeYAML, as every config file of switchyard). Every
// problem is reported at once, each as PATH:LINE:COLUMN: KEY.PATH: what
// was given and what was expected (unknown keys with the closest known
// one), in the words of the file, never Go's. An empty file, or a null
// document, configures nothing.
func ParseFile(path string, data []byte) (FileConfig, error) {
	var fc FileConfig
	src, err := config.DecodeYAML(data, path, &fc)
	if errors.Is(err, config.ErrEmpty) {
		return FileConfig{}, nil
	}
	if src == nil {
		return FileConfig{}, err // not YAML, or not a mapping
	}
	invalid := fc.locate(src)
	if err != nil {
		// Report the settings' own problems too (overflow: drop, a bad
		// name), from what did decode, except at a key already shown.
		return FileConfig{}, errors.Join(err, withoutReported(invalid, err))
	}
	if invalid != nil {
		return FileConfig{}, invalid
	}
	fc.src = src
	return fc, nil
}

// withoutReported returns the located errors of invalid except those at
// a key path that an error of reported is at.
func withoutReported(invalid, reported error) error {
	at := map[string]bool{}
	for _, e := range unjoin(reported) {
		var ce *config.Error
		if errors.As(e, &ce) {
			at[ce.Path] = true
		}
	}
	var out []error
	for _, e := range unjoin(invalid) {
		var ce *config.Error
		if errors.As(e, &ce) && at[ce.Path] {
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// problem is a validation error of the settings in section, the key path
// of a part of the file ("queues.orders"; "" for the top level). Its
// errors name their key inside the section (config.KeyPather).
type problem struct {
	section string
	err     error
}

func (fc FileConfig) problems() []problem {
	var ps []problem
	add := func(section string, err error) {
		if err != nil {
			ps = append(ps, problem{section, err})
		}
	}
	add("", broker.CheckSegmentBytes("segment_bytes", fc.SegmentBytes))
	if fc.Preallocate < 0 {
		add("", config.Fieldf("preallocate", "%d must not be negative", fc.Preallocate))
	}
	for _, name := range sortedKeys(fc.Queues) {
		if !broker.ValidName(name) {
			add("", config.Fieldf("queues."+name, "invalid queue name"))
		}
		add("queues."+name, fc.Queues[name].Validate())
	}
	for _, name := range sortedKeys(fc.Topics) {
		if !broker.ValidName(name) {
			add("", config.Fieldf("topics."+name, "invalid topic name"))
		}
		add("topics."+name, fc.Topics[name].Validate())
	}
	for _, name := range sortedKeys(fc.Streams) {
		if !broker.ValidName(name) {
			add("", config.Fieldf("streams."+name, "invalid stream name"))
		}
		add("streams."+name, fc.Streams[name].Validate())
	}
	if fc.TLS != nil {
		add("tls", fc.TLS.Validate())
	}
	if fc.Auth != nil {
		add("auth", fc.Auth.Validate())
	}
	return ps
}

// Validate reports every problem, each prefixed by its key path.
func (fc FileConfig) Validate() error {
	var errs []error
	for _, p := range fc.problems() {
		for _, e := range unjoin(p.err) {
			if p.section != "" {
				e = fmt.Errorf("%s.%w", p.section, e)
			}
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// locate is Validate with each error at its key in the file src.
func (fc FileConfig) locate(src *config.Source) error {
	var errs []error
	for _, p := range fc.problems() {
		errs = append(errs, src.Wrap(p.section, p.err))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Apply declares the file's queues, topics and streams on b. When fc was
// parsed from a file, each error is located at its name there.
func (fc FileConfig) Apply(b *engine.Broker) error {
	var errs []error
	failed := func(section string, err error) {
		if err == nil {
			return
		}
		if fc.src != nil {
			err = fc.src.Wrap(section, err)
		} else {
			err = fmt.Errorf("%s: %w", section, err)
		}
		errs = append(errs, err)
	}
	for _, name := range sortedKeys(fc.Queues) {
		failed("queues."+name, b.Declare(name, fc.Queues[name]))
	}
	for _, name := range sortedKeys(fc.Topics) {
		failed("topics."+name, b.DeclareTopic(name, fc.Topics[name]))
	}
	for _, name := range sortedKeys(fc.Streams) {
		failed("streams."+name, b.DeclareStream(name, fc.Streams[name]))
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
