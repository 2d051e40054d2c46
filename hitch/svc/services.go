package svc

import (
	"net/http"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/identity"
)

// Services is the table of Hitch's services, in the order `hitch up`
// starts them and puts their routes in the gateway. Adding a service is
// one entry:
//
//	{Name: hitch.Rides, Replicated: true, Bus: true,
//		New: Adapt(rides.New, func(c *rides.Config, d Deps) { c.Logger = d.Logger }),
//		Routes: []Route{{Name: "rides-get", PathPattern: "/v1/rides/*", Methods: []string{"GET"}, Role: AnyRole}, ...}},
func Services() []Spec {
	return []Spec{
		{
			Name:       hitch.Identity,
			Replicated: true, // its state is all in its database
			New:        Adapt(identity.New, func(c *identity.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "auth-register", Path: identity.PathRegister, Methods: []string{http.MethodPost}, Role: Public},
				{Name: "auth-login", Path: identity.PathLogin, Methods: []string{http.MethodPost}, Role: Public},
				{Name: "jwks", Path: identity.PathJWKS, Methods: []string{http.MethodGet, http.MethodHead}, Role: Public},
			},
		},
	}
}
