package auth_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/switchyard/switchyard/auth"
)

// A gateway authenticates each request with the route's methods, checks
// the route's Require, strips client-supplied identity headers and
// forwards the identity upstream.
func Example() {
	a, err := auth.New(auth.Config{
		Consumers: []auth.Consumer{{
			Name: "alice", Tier: "premium", Scopes: []string{"orders:read"},
			APIKeys: []auth.APIKey{{Hash: auth.HashAPIKey("sy_live_0123456789abcdef")}},
		}},
	}, auth.Options{})
	if err != nil {
		panic(err)
	}
	route := auth.Route{Auth: auth.MethodAPIKey | auth.MethodJWT, Require: &auth.Require{Scopes: []string{"orders:read"}}}

	handle := func(r *http.Request) {
		auth.StripIdentityHeaders(r.Header)
		id, err := a.Authenticate(r, route.Auth)
		if err == nil {
			err = route.Require.Check(id)
		}
		var e *auth.Error
		if errors.As(err, &e) {
			w := httptest.NewRecorder()
			e.SetHeaders(w.Header())
			w.WriteHeader(e.Status)
			json.NewEncoder(w).Encode(map[string]string{"error": e.Message, "code": e.Code})
			fmt.Print(w.Code, " ", w.Header().Values("WWW-Authenticate"), " ", w.Body.String())
			return
		}
		auth.ForwardHeaders(r.Header, id)
		fmt.Println(r.Header.Get(auth.HeaderConsumer), r.Header.Get(auth.HeaderTier), r.Header.Get(auth.HeaderScopes))
	}

	r := httptest.NewRequest("GET", "/v1/orders", nil)
	r.Header.Set("X-Consumer", "admin") // spoofed, stripped
	r.Header.Set("X-API-Key", "sy_live_0123456789abcdef")
	handle(r)

	handle(httptest.NewRequest("GET", "/v1/orders", nil))
	// Output:
	// alice premium orders:read
	// 401 [Bearer realm="switchyard" APIKey realm="switchyard"] {"code":"missing_credentials","error":"missing credentials: expected api_key,jwt"}
}

func ExampleHashAPIKey() {
	// Store the hash in config, hand the key to the consumer.
	fmt.Println(auth.HashAPIKey("sy_live_0123456789abcdef"))
	// Output: sha256:9ae3290970cb17765bc461474232381743e3ff4cdd4fba1cb62a1592944dcd93
}

func ExampleRequire_Check() {
	req := &auth.Require{Scopes: []string{"orders:write"}, Tiers: []string{"premium"}}
	err := req.Check(&auth.Identity{Consumer: "bob", Tier: "free", Scopes: []string{"orders:read"}, Method: auth.MethodAPIKey})
	fmt.Println(err)
	// Output: auth: missing scopes "orders:write"; tier "free" is not one of "premium"
}
