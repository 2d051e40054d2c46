package svc

import (
	"context"
	"net/http"
	"strconv"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/cardprocessor"
	"github.com/switchyard/switchyard/hitch/identity"
	"github.com/switchyard/switchyard/hitch/location"
	"github.com/switchyard/switchyard/hitch/matching"
	"github.com/switchyard/switchyard/hitch/notifications"
	"github.com/switchyard/switchyard/hitch/payments"
	"github.com/switchyard/switchyard/hitch/rides"
	"github.com/switchyard/switchyard/hitch/views"
	"github.com/switchyard/switchyard/hitch/web"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
)

// Web is the web app's name: a process serving hitch/web's embedded
// single-page app, behind the gateway's edge cache.
const Web = "web"

// Services is the table of Hitch's services, in the order `hitch up`
// starts them and puts their routes in the gateway (the first matching
// route wins: views' receipt route comes before rides' routes). Every
// service of the public API is listed with its routes; one whose package
// is not written yet has no New: the gateway routes to it (503 until an
// instance registers, after auth) and hitch up starts no process for it.
// Adding a service is setting its New (and Bus when it uses the bus):
//
//	New: Adapt(rides.New, func(c *rides.Config, d Deps) { c.Logger = d.Logger }),
//
// and for one that calls others by name through discovery:
//
//	New: Adapt(payments.New, func(c *payments.Config, d Deps) {
//		c.Logger, c.HTTPClient, c.CardProcessorURL = d.Logger, d.HTTPClient, "http://"+hitch.CardProcessor
//	}),
func Services() []Spec {
	get, post, put := []string{http.MethodGet, http.MethodHead}, []string{http.MethodPost}, []string{http.MethodPut}
	return []Spec{
		{
			Name:       hitch.Identity,
			Replicated: true, // all its state is in its database
			New:        Adapt(identity.New, func(c *identity.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "auth-register", Path: identity.PathRegister, Methods: post, Role: Public, Contract: true},
				{Name: "auth-login", Path: identity.PathLogin, Methods: post, Role: Public, Contract: true},
				{Name: "jwks", Path: identity.PathJWKS, Methods: get, Role: Public, Contract: true},
			},
		},
		{
			Name: hitch.Location, Replicated: true, Bus: true,
			New: Adapt(location.New, func(c *location.Config, d Deps) {
				c.Logger, c.Redis, c.Replica = d.Logger, d.Redis, strconv.Itoa(d.Replica)
			}),
			Routes: []Route{
				{Name: "driver-location", Path: "/v1/drivers/me/location", Methods: put, Role: Driver, Contract: true},
				{Name: "drivers-nearby", Path: "/v1/drivers/nearby", Methods: get, Role: AnyRole, Contract: true},
			},
		},
		{
			Name: hitch.Matching, Replicated: true, Bus: true,
			New: Adapt(matching.New, func(c *matching.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "driver-availability", Path: "/v1/drivers/me/availability", Methods: post, Role: Driver, Contract: true},
			},
		},
		{
			Name: hitch.Views, Replicated: true, Bus: true,
			New: Adapt(views.New, func(c *views.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "ride-receipt", PathPattern: "/v1/rides/*/receipt", Methods: get, Role: Rider, Contract: true},
				{Name: "driver-earnings", Path: "/v1/drivers/me/earnings", Methods: get, Role: Driver, Contract: true},
			},
		},
		{
			Name: hitch.Rides, Replicated: true, Bus: true,
			New: Adapt(rides.New, func(c *rides.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "ride-request", Path: "/v1/rides", Methods: post, Role: Rider, Contract: true},
				{Name: "ride-get", PathPattern: "/v1/rides/*", Methods: get, Role: AnyRole, Contract: true},
				{Name: "ride-start", PathPattern: "/v1/rides/*/start", Methods: post, Role: Driver, Contract: true},
				{Name: "ride-finish", PathPattern: "/v1/rides/*/finish", Methods: post, Role: Driver, Contract: true},
				{Name: "ride-cancel", PathPattern: "/v1/rides/*/cancel", Methods: post, Role: AnyRole, Contract: true},
			},
		},
		{
			Name: hitch.Payments, Replicated: true, Bus: true, // no public routes
			New: Adapt(payments.New, func(c *payments.Config, d Deps) {
				c.Logger, c.HTTPClient = d.Logger, d.HTTPClient
				if c.ProcessorURL == "" {
					c.ProcessorURL = "http://" + hitch.CardProcessor
				}
			}),
		},
		{
			// The simulated external processor: one process (its faults
			// live in its memory), called by payments only.
			Name: hitch.CardProcessor, Replicated: false,
			New: Adapt(cardprocessor.New, func(c *cardprocessor.Config, d Deps) { c.Logger = d.Logger }),
		},
		{
			Name: hitch.Notifications, Replicated: true, Bus: true,
			New: Adapt(notifications.New, func(c *notifications.Config, d Deps) { c.Logger = d.Logger }),
			Routes: []Route{
				{Name: "events-sse", Path: "/v1/events", Methods: get, Role: AnyRole},
				{Name: "events-ws", Path: "/v1/events/ws", Methods: get, Role: AnyRole},
			},
		},
		{
			// Last: its routes catch what no API route took.
			Name: Web, Replicated: true,
			New: Adapt(newWeb, nil),
			Routes: []Route{
				{Name: "web-assets", PathPrefix: "/assets", Methods: get, Role: Public, Cache: true},
				{Name: "web-app", Path: "/", Methods: get, Role: Public, Cache: true},
			},
		},
	}
}

// webService serves the embedded web app; it has no background work.
type webService struct{ h http.Handler }

func (w webService) Handler() http.Handler { return w.h }

func (webService) Run(ctx context.Context) error { <-ctx.Done(); return nil }

type webConfig struct{}

func newWeb(ctx context.Context, db *store.DB, bus message.Backend, _ webConfig) (webService, error) {
	h, err := web.New()
	if err != nil {
		return webService{}, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return webService{h: mux}, nil
}
