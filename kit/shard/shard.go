// Package shard spreads a service's data over several databases, the way
// the notes scale a database that one machine no longer holds: keys are
// routed to N shards by hash, by range or by consistent hash; a
// resharding plan moves only the keys that change owner; reads go to
// read replicas with an optional read-your-writes guarantee; and an
// active-passive pair fails over with fencing, so an old primary that
// comes back cannot accept writes.
//
// Strategies are pure functions of the key, stable across processes and
// versions (the hash is FNV-1a 64 with a murmur3 finaliser, the same the
// gateway's consistent_hash policy uses), so every replica of a service
// routes a key to the same shard.
package shard

import (
	"fmt"
	"sort"

	"github.com/switchyard/switchyard/balance"
)

// Strategy maps a key to a shard index in [0, N()).
type Strategy interface {
	Shard(key string) int
	N() int
}

// Hash is hash(key) mod n: even spread, but changing n moves almost every
// key. Prefer Consistent when shards will be added.
func Hash(n int) (Strategy, error) {
	if n <= 0 {
		return nil, fmt.Errorf("shard: Hash(%d): want at least one shard", n)
	}
	return hashMod(n), nil
}

type hashMod int

func (h hashMod) N() int { return int(h) }

func (h hashMod) Shard(key string) int { return int(balance.HashKey(key) % uint64(h)) }

// Range routes by sorted boundaries: shard 0 holds keys < bounds[0],
// shard i keys in [bounds[i-1], bounds[i]), the last shard the rest, so
// N() is len(bounds)+1. Ranges keep neighbouring keys together (scans by
// prefix or time touch one shard) at the price of hot spots.
func Range(bounds []string) (Strategy, error) {
	if !sort.StringsAreSorted(bounds) {
		return nil, fmt.Errorf("shard: Range: boundaries must be sorted")
	}
	for i := 1; i < len(bounds); i++ {
		if bounds[i] == bounds[i-1] {
			return nil, fmt.Errorf("shard: Range: boundary %q repeated", bounds[i])
		}
	}
	return ranges(append([]string(nil), bounds...)), nil
}

type ranges []string

func (r ranges) N() int { return len(r) + 1 }

func (r ranges) Shard(key string) int {
	return sort.Search(len(r), func(i int) bool { return key < r[i] })
}

// Consistent places shards on the gateway's consistent-hash ring
// (balance.Ring): adding a shard moves only the keys it takes over, about
// 1/N of them. names identify shards (keep them when renumbering);
// weights may be nil.
func Consistent(names []string, weights []int) (Strategy, error) {
	r, err := balance.NewRing(names, weights, 0)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return ring{r, len(names)}, nil
}

type ring struct {
	r *balance.Ring
	n int
}

func (r ring) N() int { return r.n }

func (r ring) Shard(key string) int { return r.r.Owner(key) }

// Move is one key that changes shard between two strategies.
type Move struct {
	Key      string
	From, To int
}

// Plan lists the keys whose shard differs between from and to: exactly
// what a resharding must copy, and nothing else.
func Plan(keys []string, from, to Strategy) []Move {
	var out []Move
	for _, k := range keys {
		if a, b := from.Shard(k), to.Shard(k); a != b {
			out = append(out, Move{Key: k, From: a, To: b})
		}
	}
	return out
}
