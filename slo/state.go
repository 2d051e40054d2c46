package slo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The state file (Options.StatePath, STATE_DIR/slo.json) keeps each SLO's
// bucket counts and alert states, so a restart neither resets the error
// budget nor forgets (or repeats) an alert:
//
//	{"version": 1, "crc32c": N, "state": STATE}
//
// where N is the CRC-32C (Castagnoli) of STATE's bytes exactly as
// written, and STATE is
//
//	{"saved_at": RFC 3339,
//	 "slos": [{"name": ..., "key": measurement key,
//	           "coarse": [{"s": slot, "g": good, "t": total}, ...],
//	           "fine": [...],
//	           "alerts": [{"key": alert key, "firing": bool, "since": RFC 3339}]}]}
//
// A slot is a bucket's number: Unix time in nanoseconds divided by the
// ring's bucket width, which the measurement key fixes (it names the
// target, kind, statuses or threshold, window and both rings' shapes).
// Counts are restored only into an SLO of the same name and key, alert
// states only into an alert of the same key (definition and objective).
//
// The file is replaced atomically: written to a temporary file in the
// same directory, fsynced, renamed over the old one, and the directory
// fsynced. A file that cannot be read, fails its checksum or does not
// decode is reported, renamed to slo.json.corrupt, and ignored: the SLOs
// start with no counts.

const stateVersion = 1

// maxStateBytes bounds the state file read at start.
const maxStateBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type stateFile struct {
	Version int             `json:"version"`
	CRC32C  uint32          `json:"crc32c"`
	State   json.RawMessage `json:"state"`
}

type state struct {
	SavedAt time.Time   `json:"saved_at"`
	SLOs    []*savedSLO `json:"slos"`
}

type savedSLO struct {
	Name   string       `json:"name"`
	Key    string       `json:"key"`
	Coarse []slotCount  `json:"coarse"`
	Fine   []slotCount  `json:"fine,omitempty"`
	Alerts []savedAlert `json:"alerts"`
}

type savedAlert struct {
	Key    string    `json:"key"`
	Firing bool      `json:"firing"`
	Since  time.Time `json:"since"`
}

// Save writes the state file now (nothing without Options.StatePath).
func (e *Engine) Save() error {
	if e.opts.StatePath == "" {
		return nil
	}
	e.mu.Lock()
	data, err := e.encodeLocked(e.now())
	e.dirty = false
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if err := writeAtomic(e.opts.StatePath, data); err != nil {
		e.mu.Lock()
		e.dirty = true // try again at the next evaluation
		e.mu.Unlock()
		return err
	}
	return nil
}

func (e *Engine) encodeLocked(now time.Time) ([]byte, error) {
	st := state{SavedAt: now.UTC(), SLOs: []*savedSLO{}}
	seen := map[string]bool{}
	for _, t := range e.table.Load().list {
		seen[t.cfg.Name] = true
		s := &savedSLO{Name: t.cfg.Name, Key: t.key, Coarse: t.coarse.snapshot(now.UnixNano())}
		if t.fine != nil {
			s.Fine = t.fine.snapshot(now.UnixNano())
		}
		for _, a := range t.alerts {
			s.Alerts = append(s.Alerts, savedAlert{Key: a.key, Firing: a.firing, Since: a.since})
		}
		st.SLOs = append(st.SLOs, s)
	}
	inner, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encoding slo state: %w", err)
	}
	return json.Marshal(stateFile{Version: stateVersion, CRC32C: crc32.Checksum(inner, castagnoli), State: inner})
}

// writeAtomic replaces path with data: temp file, fsync, rename, dir fsync.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving slo state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving slo state to %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("saving slo state: syncing %s: %w", dir, err)
		}
	}
	return nil
}

// ErrCorruptState is the cause of Load's error for a state file that does
// not pass its checksum or does not decode.
var ErrCorruptState = errors.New("corrupt slo state file")

// Load reads the state file (a missing one is no error) and restores the
// counts and alert states of the SLOs set so far, keeping the rest for
// SLOs a later Set adds. A corrupt file is renamed to PATH.corrupt and
// reported (wrapping ErrCorruptState); the engine then starts empty.
func (e *Engine) Load() error {
	if e.opts.StatePath == "" {
		return nil
	}
	f, err := os.Open(e.opts.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading slo state: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("reading slo state: %w", err)
	}
	if err := e.restore(data); err != nil {
		bad := e.opts.StatePath + ".corrupt"
		if rerr := os.Rename(e.opts.StatePath, bad); rerr == nil {
			err = fmt.Errorf("%w (moved to %s; starting with no counts)", err, bad)
		}
		return fmt.Errorf("loading %s: %w", e.opts.StatePath, err)
	}
	return nil
}

// restore applies a state file's contents (see Load).
func (e *Engine) restore(data []byte) error {
	st, err := decodeState(data)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.restored = map[string]*savedSLO{}
	for _, s := range st.SLOs {
		e.restored[s.Name] = s
	}
	for _, t := range e.table.Load().list {
		if s, ok := e.restored[t.cfg.Name]; ok {
			e.restoreLocked(t, s)
		}
	}
	return nil
}

// decodeState checks and decodes a state file.
func decodeState(data []byte) (*state, error) {
	if len(data) > maxStateBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorruptState, maxStateBytes)
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrCorruptState)
	}
	if sf.Version != stateVersion {
		return nil, fmt.Errorf("%w: version %d, expected %d", ErrCorruptState, sf.Version, stateVersion)
	}
	if got := crc32.Checksum(sf.State, castagnoli); got != sf.CRC32C {
		return nil, fmt.Errorf("%w: checksum %08x does not match the recorded %08x", ErrCorruptState, got, sf.CRC32C)
	}
	var st state
	dec = json.NewDecoder(bytes.NewReader(sf.State))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	for _, s := range st.SLOs {
		if s == nil {
			return nil, fmt.Errorf("%w: null slo entry", ErrCorruptState)
		}
		for _, c := range append(s.Coarse[:len(s.Coarse):len(s.Coarse)], s.Fine...) {
			if c.Good > c.Total {
				return nil, fmt.Errorf("%w: slo %q: slot %d has more good (%d) than total (%d)", ErrCorruptState, s.Name, c.Slot, c.Good, c.Total)
			}
		}
	}
	return &st, nil
}

// restoreLocked applies saved counts and alert states to t when they
// describe the same measurement.
func (e *Engine) restoreLocked(t *tracker, s *savedSLO) {
	delete(e.restored, s.Name)
	if s.Key != t.key {
		e.log.Info("slo definition changed since the state was saved: starting its counts afresh", "slo", t.cfg.Name)
		return
	}
	now := e.now().UnixNano()
	t.coarse.restore(now, s.Coarse)
	if t.fine != nil {
		t.fine.restore(now, s.Fine)
	}
	byKey := map[string]savedAlert{}
	for _, a := range s.Alerts {
		byKey[a.Key] = a
	}
	for _, a := range t.alerts {
		if sa, ok := byKey[a.key]; ok {
			a.firing, a.since = sa.Firing, sa.Since
		}
	}
}
