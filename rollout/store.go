package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the rollouts' file in the gateway's state_dir.
const FileName = "rollouts.json"

// fileVersion is the format of the rollouts file:
//
//	{"version": 1, "rollouts": [Rollout, ...]}
//
// one entry per upstream (its latest rollout, active or final), each a
// Rollout as JSON (spec, state, step, step_started, stable, canary,
// started, updated, message, baseline, analysis). The file is replaced
// whole on every change: written to a temporary file in the same
// directory, fsynced, renamed over the old one, and the directory fsynced,
// so a crash leaves the old file or the new one, never a mix.
const fileVersion = 1

type file struct {
	Version  int        `json:"version"`
	Rollouts []*Rollout `json:"rollouts"`
}

// Save replaces the file at path with rs, atomically.
func Save(path string, rs []*Rollout) error {
	data, err := json.MarshalIndent(file{Version: fileVersion, Rollouts: rs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding rollouts: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".rollouts-*.tmp")
	if err != nil {
		return fmt.Errorf("saving rollouts: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving rollouts: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("saving rollouts: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving rollouts: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving rollouts: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("saving rollouts: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("saving rollouts: fsync %s: %w", dir, err)
	}
	return nil
}

// Load reads the file at path; a missing file is no rollouts. A file that
// does not decode, or whose entries do not validate, is an error naming
// it: the gateway does not guess what traffic a broken file meant.
func Load(path string) ([]*Rollout, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading rollouts: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: decoding rollouts: %v (move the file away to start without them)", path, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("%s: rollouts file version %d: expected %d", path, f.Version, fileVersion)
	}
	seen := map[string]bool{}
	for i, r := range f.Rollouts {
		if r == nil {
			return nil, fmt.Errorf("%s: rollouts[%d]: null entry", path, i)
		}
		if err := r.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("%s: rollouts[%d].spec: %w", path, i, err)
		}
		switch r.State {
		case Progressing, Paused, Promoted, RolledBack, Aborted, Completed:
		default:
			return nil, fmt.Errorf("%s: rollouts[%d].state: unknown state %q", path, i, r.State)
		}
		if r.Step < 1 || r.Step > r.Steps() {
			return nil, fmt.Errorf("%s: rollouts[%d].step: %d out of range 1 to %d", path, i, r.Step, r.Steps())
		}
		if seen[r.Spec.Upstream] {
			return nil, fmt.Errorf("%s: rollouts[%d]: a second rollout of upstream %q", path, i, r.Spec.Upstream)
		}
		seen[r.Spec.Upstream] = true
	}
	return f.Rollouts, nil
}
