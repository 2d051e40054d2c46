package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/switchyard/switchyard/edge"
)

// A cache wraps the handler that reaches the origin: the second request
// is answered from memory.
func Example() {
	calls := 0
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	})
	cache, err := edge.New(edge.NewStore(64<<20, 0), edge.Policy{}, edge.Options{})
	if err != nil {
		panic(err)
	}
	defer cache.Close()
	h := cache.Middleware()(origin)
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://example.com/greeting", nil))
		body, _ := io.ReadAll(rec.Body)
		fmt.Printf("%s | %s | Age: %q\n", body, rec.Header().Get("Cache-Status"), rec.Header().Get("Age"))
	}
	fmt.Println("origin calls:", calls)
	// Output:
	// hello | switchyard; fwd=uri-miss; fwd-status=200; stored | Age: ""
	// hello | switchyard; hit | Age: "0"
	// origin calls: 1
}
