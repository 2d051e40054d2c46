package balance

import (
	"fmt"
	"slices"
)

// Ring is a consistent-hash ring over named members, the same geometry
// the consistent_hash policy uses for targets, for callers that place
// keys rather than requests: shards, partitions, cache nodes. Adding or
// removing a member moves only the keys that member gains or loses.
// A Ring is immutable and safe for concurrent use.
type Ring struct {
	names  []string
	points []uint64
	owners []int32
}

// NewRing builds a ring of names with weights (nil: all 1) and
// virtualNodes points per unit of weight (0: DefaultVirtualNodes).
// Names must be unique and non-empty; weights positive.
func NewRing(names []string, weights []int, virtualNodes int) (*Ring, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("balance: a ring needs at least one member")
	}
	if weights == nil {
		weights = make([]int, len(names))
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != len(names) {
		return nil, fmt.Errorf("balance: %d weights for %d ring members", len(weights), len(names))
	}
	if virtualNodes <= 0 {
		virtualNodes = DefaultVirtualNodes
	}
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if n == "" || seen[n] {
			return nil, fmt.Errorf("balance: ring member %d: name %q is empty or repeated", i, n)
		}
		seen[n] = true
		if weights[i] <= 0 {
			return nil, fmt.Errorf("balance: ring member %q: weight %d, want at least 1", n, weights[i])
		}
	}
	points, owners := placePoints(names, weights, virtualNodes)
	return &Ring{names: slices.Clone(names), points: points, owners: owners}, nil
}

// Owner is the index (in the names given to NewRing) of the member that
// owns key. It does not allocate.
func (r *Ring) Owner(key string) int {
	h := hashString(key)
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0
	}
	return int(r.owners[i])
}

// OwnerName is the name of the member that owns key.
func (r *Ring) OwnerName(key string) string { return r.names[r.Owner(key)] }

// HashKey is the 64-bit hash the ring and the consistent_hash policy place
// keys with (FNV-1a with the murmur3 finaliser): stable across processes
// and versions, so callers that place keys themselves (hash-mod shards)
// agree with the ring. It does not allocate.
func HashKey(s string) uint64 { return hashString(s) }

// Names are the ring's members in the order given.
func (r *Ring) Names() []string { return slices.Clone(r.names) }
