package geo

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestDistanceKnown(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b Point
		want float64 // miles
		tol  float64
	}{
		{"same point", Point{37.77, -122.42}, Point{37.77, -122.42}, 0, 1e-9},
		{"one degree of latitude", Point{0, 0}, Point{1, 0}, MilesPerDegree, 1e-9},
		{"one degree of longitude on the equator", Point{0, 0}, Point{0, 1}, MilesPerDegree, 1e-9},
		{"quarter meridian", Point{0, 0}, Point{90, 0}, EarthRadiusMi * math.Pi / 2, 1e-6},
		{"antipodes", Point{0, 0}, Point{0, 180}, EarthRadiusMi * math.Pi, 1e-6},
		{"across the antimeridian", Point{0, 179.5}, Point{0, -179.5}, MilesPerDegree, 1e-6},
		{"pole to pole by any meridian", Point{90, 10}, Point{-90, -170}, EarthRadiusMi * math.Pi, 1e-6},
		// San Francisco to Los Angeles, about 347 mi on the sphere.
		{"SF to LA", Point{37.7749, -122.4194}, Point{34.0522, -118.2437}, 347.4, 0.5},
	} {
		if got := DistanceMi(tc.a, tc.b); !near(got, tc.want, tc.tol) {
			t.Errorf("%s: %v mi, want %v ± %v", tc.name, got, tc.want, tc.tol)
		}
		if got, back := DistanceMi(tc.a, tc.b), DistanceMi(tc.b, tc.a); !near(got, back, 1e-9) {
			t.Errorf("%s: not symmetric: %v vs %v", tc.name, got, back)
		}
	}
}

// bruteRoute samples the arc densely (slerp) and returns the nearest
// sample's distance and position.
func bruteRoute(r Route, p Point, n int) (float64, float64) {
	a, b := toVec(r.From), toVec(r.To)
	om := angle(a, b)
	best, pos := math.Inf(1), 0.0
	for i := 0; i <= n; i++ {
		f := float64(i) / float64(n)
		var v vec
		if om == 0 {
			v = a
		} else {
			s1, s2 := math.Sin((1-f)*om)/math.Sin(om), math.Sin(f*om)/math.Sin(om)
			v = vec{s1*a.x + s2*b.x, s1*a.y + s2*b.y, s1*a.z + s2*b.z}
		}
		sp := Point{math.Asin(clampUnit(v.z)) / rad, math.Atan2(v.y, v.x) / rad}
		if d := DistanceMi(sp, p); d < best {
			best, pos = d, f
		}
	}
	return best, pos
}

// The exact spherical projection agrees with a dense sampling of the arc,
// for city-scale routes anywhere (poles and antimeridian included).
func TestRouteAgainstDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		c := Point{rng.Float64()*178 - 89, rng.Float64()*360 - 180}
		if i%10 == 0 {
			c.Lon = 179.95 // routes crossing the antimeridian
		}
		off := func(mi float64) Point {
			dlat := (rng.Float64()*2 - 1) * mi / MilesPerDegree
			dlon := (rng.Float64()*2 - 1) * mi / MilesPerDegree / math.Max(math.Cos(c.Lat*rad), 0.05)
			return wrap(Point{math.Max(-90, math.Min(90, c.Lat+dlat)), c.Lon + dlon})
		}
		r := Route{off(10), off(10)}
		p := off(12)
		d, pos := r.Project(p)
		bd, bpos := bruteRoute(r, p, 20000)
		L := r.LengthMi()
		if !near(d, bd, 1e-3+L/20000) {
			t.Fatalf("route %+v, p %+v: distance %v, dense sampling %v", r, p, d, bd)
		}
		if d < bd-1e-5 { // 1.6 cm: float rounding of the two methods
			t.Fatalf("route %+v, p %+v: distance %v below the sampled minimum %v", r, p, d, bd)
		}
		if L > 0.1 && !near(pos, bpos, 0.01) && d > 0.01 {
			// Positions may differ only where two points of the arc are
			// equally near (p beyond both ends); check distances agree there.
			if !near(DistanceMi(p, r.From), DistanceMi(p, r.To), 0.01) {
				t.Fatalf("route %+v, p %+v: position %v, dense sampling %v", r, p, pos, bpos)
			}
		}
	}
}

func wrap(p Point) Point {
	for p.Lon > 180 {
		p.Lon -= 360
	}
	for p.Lon < -180 {
		p.Lon += 360
	}
	return p
}

func TestRouteCases(t *testing.T) {
	// A 10-mile route along the equator, eastward.
	r := Route{Point{0, 0}, Point{0, 10 / MilesPerDegree}}
	for _, tc := range []struct {
		name   string
		p      Point
		d, pos float64
	}{
		{"on the start", Point{0, 0}, 0, 0},
		{"on the end", r.To, 0, 1},
		{"middle, half a mile north", Point{0.5 / MilesPerDegree, 5 / MilesPerDegree}, 0.5, 0.5},
		{"before the start", Point{0, -1 / MilesPerDegree}, 1, 0},
		{"after the end", Point{0, 11 / MilesPerDegree}, 1, 1},
	} {
		d, pos := r.Project(tc.p)
		if !near(d, tc.d, 1e-6) || !near(pos, tc.pos, 1e-6) {
			t.Errorf("%s: (%v, %v), want (%v, %v)", tc.name, d, pos, tc.d, tc.pos)
		}
	}
	if d, pos := (Route{Point{1, 1}, Point{1, 1}}).Project(Point{1, 1}); d != 0 || pos != 0 {
		t.Errorf("point route: (%v, %v)", d, pos)
	}
	if d, _ := r.Project(Point{math.NaN(), 0}); !math.IsNaN(d) {
		t.Errorf("NaN point: distance %v, want NaN", d)
	}
}

func TestFitAndDetour(t *testing.T) {
	m := 1 / MilesPerDegree // one mile in degrees at the equator
	r := Route{Point{0, 0}, Point{0, 10 * m}}
	on := r.FitOf(Point{0, 2 * m}, Point{0, 8 * m})
	if !on.Matches(0.5) || !near(on.DetourMi, 0, 1e-6) {
		t.Errorf("rider on the route: %+v", on)
	}
	back := r.FitOf(Point{0, 8 * m}, Point{0, 2 * m})
	if back.Matches(0.5) {
		t.Errorf("rider against the direction of travel matched: %+v", back)
	}
	off := r.FitOf(Point{0.4 * m, 2 * m}, Point{0.6 * m, 8 * m})
	if off.Matches(0.5) {
		t.Errorf("drop-off 0.6 mi off the route matched: %+v", off)
	}
	side := r.FitOf(Point{0.4 * m, 2 * m}, Point{0.4 * m, 8 * m})
	if want := 2*math.Hypot(2, 0.4) + 6 - 10; !side.Matches(0.5) || !near(side.DetourMi, want, 1e-4) {
		// Two legs of hypot(2, 0.4) and 6 mi between, against 10 mi.
		t.Errorf("rider 0.4 mi off: %+v, want a match with a detour of %v mi", side, want)
	}
	nan := r.FitOf(Point{math.NaN(), 0}, Point{0, 1})
	if nan.Matches(0.5) {
		t.Errorf("NaN pickup matched: %+v", nan)
	}
}

// The equirectangular approximation is NOT used; this records why: its
// error grows past the 0.5-mile corridor's tolerance on long or polar
// routes, while the spherical projection has none to bound.
func TestEquirectangularErrorRecorded(t *testing.T) {
	equi := func(a, b Point) float64 {
		x := (b.Lon - a.Lon) * math.Cos((a.Lat+b.Lat)/2*rad)
		y := b.Lat - a.Lat
		return math.Hypot(x, y) * MilesPerDegree
	}
	city := [2]Point{{37.70, -122.50}, {37.82, -122.36}}
	if e := math.Abs(equi(city[0], city[1]) - DistanceMi(city[0], city[1])); e > 0.001 {
		t.Errorf("city scale: equirectangular off by %v mi", e)
	}
	polar := [2]Point{{85, 0}, {85, 90}}
	if e := math.Abs(equi(polar[0], polar[1]) - DistanceMi(polar[0], polar[1])); e < 10 {
		t.Errorf("polar: equirectangular off by only %v mi", e)
	}
}

// Every point within the pad of a route lies in its Box, wherever the
// route is (antimeridian, near the poles, long arcs).
func TestBoxHoldsTheCorridor(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 3000; i++ {
		var r Route
		switch i % 3 {
		case 0: // city
			c := Point{rng.Float64()*170 - 85, rng.Float64()*360 - 180}
			r = Route{c, wrap(Point{math.Max(-90, math.Min(90, c.Lat+rng.Float64()*0.3-0.15)), c.Lon + rng.Float64()*0.3 - 0.15})}
		case 1: // anywhere to anywhere
			r = Route{Point{rng.Float64()*180 - 90, rng.Float64()*360 - 180}, Point{rng.Float64()*180 - 90, rng.Float64()*360 - 180}}
		default: // across the antimeridian
			r = Route{Point{rng.Float64()*10 - 5, 179.9}, Point{rng.Float64()*10 - 5, -179.9}}
		}
		box := r.Box(0.5)
		p := Point{math.Max(-90, math.Min(90, r.From.Lat+rng.Float64()*0.4-0.2)), r.From.Lon + rng.Float64()*0.4 - 0.2}
		if rng.IntN(2) == 0 {
			// a point near the middle of the arc
			_, _ = r.Project(p)
			a, b := toVec(r.From), toVec(r.To)
			v := vec{a.x + b.x, a.y + b.y, a.z + b.z}
			if nv := v.norm(); nv > 1e-9 {
				mid := Point{math.Asin(clampUnit(v.z/nv)) / rad, math.Atan2(v.y, v.x) / rad}
				p = Point{math.Max(-90, math.Min(90, mid.Lat+rng.Float64()*0.02-0.01)), mid.Lon + rng.Float64()*0.02 - 0.01}
			}
		}
		p = wrap(p)
		if d := r.DistanceMi(p); d <= 0.5 && !box.Contains(p) {
			t.Fatalf("route %+v, box %+v: %+v is %v mi from the route but outside the box", r, box, p, d)
		}
	}
}
