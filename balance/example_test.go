package balance_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
)

func Example() {
	targets := []*upstream.Target{
		upstream.NewTarget("10.0.0.1:8080", 0, 5),
		upstream.NewTarget("10.0.0.2:8080", 1, 1),
		upstream.NewTarget("10.0.0.3:8080", 2, 1),
	}
	p, err := balance.New(balance.Config{Policy: balance.WeightedRoundRobinPolicy}, targets)
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	for range 7 {
		fmt.Print(p.Pick(r, upstream.Tried{}).Index)
	}
	fmt.Println()

	// A retry passes the targets already tried.
	var tried upstream.Tried
	tried.Add(0)
	fmt.Println(p.Pick(r, tried).Address)
	// Output:
	// 0010200
	// 10.0.0.2:8080
}
