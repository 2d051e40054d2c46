package transform_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/switchyard/switchyard/transform"
)

func Example() {
	req, err := transform.NewRequest(transform.Request{
		Headers: transform.Headers{Rename: map[string]string{"X-User": "X-Consumer"}, Remove: []string{"Cookie"}},
		Path:    &transform.PathRewrite{Regex: `^/v1/rides/(\d+)$`, Replace: "/rides/$1"},
		Query:   &transform.Query{Remove: []string{"debug"}},
	})
	if err != nil {
		panic(err)
	}
	resp, err := transform.NewResponse(transform.Response{JSONAllow: []string{"id", "driver.name"}})
	if err != nil {
		panic(err)
	}

	r := httptest.NewRequest("GET", "/v1/rides/42?debug=1&lang=de", nil)
	r.Header.Set("X-User", "alice")
	req.Apply(r)
	fmt.Println(r.URL, r.Header.Get("X-Consumer"))

	body := `{"id": 42, "driver": {"name": "Ann", "phone": "555"}, "fare": 2450}`
	up := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	if err := resp.Hook()(up); err != nil {
		panic(err)
	}
	filtered, _ := io.ReadAll(up.Body)
	fmt.Println(string(filtered), up.ContentLength)
	// Output:
	// /rides/42?lang=de alice
	// {"id":42,"driver":{"name":"Ann"}} 33
}
