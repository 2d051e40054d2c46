package geo_test

import (
	"fmt"

	"github.com/switchyard/switchyard/hitch/geo"
)

func Example() {
	// A driver's route across town and a rider going the same way.
	route := geo.Route{From: geo.Point{Lat: 37.7000, Lon: -122.4500}, To: geo.Point{Lat: 37.8000, Lon: -122.4500}}
	fit := route.FitOf(geo.Point{Lat: 37.7200, Lon: -122.4470}, geo.Point{Lat: 37.7800, Lon: -122.4530})
	fmt.Printf("route %.2f mi; pickup %.2f mi off at %.2f, drop-off %.2f mi off at %.2f; detour %.3f mi; matches: %v\n",
		route.LengthMi(), fit.PickupMi, fit.PickupPos, fit.DropoffMi, fit.DropPos, fit.DetourMi, fit.Matches(0.5))

	// Drivers in the index, the nearest two within 5 miles.
	ix := geo.NewIndex(0.5)
	ix.Update("ann", geo.Point{Lat: 37.7750, Lon: -122.4190}, 1)
	ix.Update("bob", geo.Point{Lat: 37.7800, Lon: -122.4100}, 1)
	ix.Update("cy", geo.Point{Lat: 37.9000, Lon: -122.3000}, 1)
	for _, h := range ix.Nearby(geo.Query{Center: geo.Point{Lat: 37.7749, Lon: -122.4194}, RadiusMi: 5, Limit: 2}, nil) {
		fmt.Printf("%s %.3f mi\n", h.ID, h.DistMi)
	}
	// Output:
	// route 6.91 mi; pickup 0.16 mi off at 0.20, drop-off 0.16 mi off at 0.80; detour 0.032 mi; matches: true
	// ann 0.023 mi
	// bob 0.623 mi
}
