package flow_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/switchyard/switchyard/kit/flow"
)

// Two stages joined by a channel: four workers upper-case, one adds a
// suffix; Ordered keeps the input order.
func ExamplePipe() {
	ctx := context.Background()
	upper := flow.Pipe(ctx, flow.Source(ctx, []string{"ann", "bob", "cy"}), flow.PipeOptions{Workers: 4, Ordered: true},
		func(ctx context.Context, s string) (string, error) { return strings.ToUpper(s), nil })
	tagged := flow.Pipe(ctx, upper.Out(), flow.PipeOptions{Ordered: true},
		func(ctx context.Context, s string) (string, error) { return s + "!", nil })
	out, err := flow.Collect(tagged)
	fmt.Println(out, err)
	// Output: [ANN! BOB! CY!] <nil>
}

// Ask three pricing services, go with the first two answers.
func ExampleGather() {
	price := func(p int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) { return p, nil }
	}
	res, err := flow.Gather(context.Background(), flow.GatherOptions{Quorum: 2}, price(12), price(11), price(13))
	fmt.Println(len(res), err)
	// Output: 2 <nil>
}

// Word counts: Map emits (word, 1) per word of a line, Reduce counts.
// The job is a value, so a literal runs directly.
func ExampleMapReduce() {
	counts, err := flow.MapReduce[string, string, int, int]{
		Map: func(ctx context.Context, line string, emit func(string, int)) error {
			for _, w := range strings.Fields(line) {
				emit(w, 1)
			}
			return nil
		},
		Reduce: func(ctx context.Context, word string, ones []int) (int, error) {
			return len(ones), nil
		},
	}.Run(context.Background(), []string{"to be or", "not to be"})
	fmt.Println(counts["to"], counts["be"], counts["or"], counts["not"], err)
	// Output: 2 2 1 1 <nil>
}
