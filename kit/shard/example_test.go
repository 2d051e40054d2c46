package shard_test

import (
	"fmt"

	"github.com/switchyard/switchyard/kit/shard"
)

// Growing from three shards to four with consistent hashing moves only
// the keys the new shard takes over.
func ExamplePlan() {
	three, _ := shard.Consistent([]string{"a", "b", "c"}, nil)
	four, _ := shard.Consistent([]string{"a", "b", "c", "d"}, nil)
	var keys []string
	for i := range 1000 {
		keys = append(keys, fmt.Sprintf("rider-%d", i))
	}
	moves := shard.Plan(keys, three, four)
	toNew := 0
	for _, m := range moves {
		if m.To == 3 {
			toNew++
		}
	}
	fmt.Println(len(moves) == toNew, len(moves) > 150 && len(moves) < 350)
	// Output: true true
}
