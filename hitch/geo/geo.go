package geo

import "math"

// EarthRadiusMi is the mean Earth radius in miles.
const EarthRadiusMi = 3958.8

// MilesPerDegree is the length of one degree of latitude (and of longitude
// on the equator), in miles.
const MilesPerDegree = EarthRadiusMi * math.Pi / 180

// Point is a position in degrees.
type Point struct {
	Lat, Lon float64
}

// Valid reports whether p is a position on Earth: finite, lat in [-90, 90],
// lon in [-180, 180].
func (p Point) Valid() bool {
	return p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180 // false for NaN
}

const rad = math.Pi / 180

// DistanceMi is the great-circle distance between a and b in miles
// (haversine).
func DistanceMi(a, b Point) float64 {
	return EarthRadiusMi * centralAngle(a, b)
}

// centralAngle is the angle between a and b seen from the Earth's centre,
// in radians.
func centralAngle(a, b Point) float64 {
	s1 := math.Sin((b.Lat - a.Lat) * rad / 2)
	s2 := math.Sin((b.Lon - a.Lon) * rad / 2)
	h := s1*s1 + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*s2*s2
	if h > 1 {
		h = 1 // rounding at antipodes
	}
	return 2 * math.Asin(math.Sqrt(h))
}

// vec is a unit vector from the Earth's centre.
type vec struct{ x, y, z float64 }

func toVec(p Point) vec {
	la, lo := p.Lat*rad, p.Lon*rad
	return vec{math.Cos(la) * math.Cos(lo), math.Cos(la) * math.Sin(lo), math.Sin(la)}
}

func (a vec) dot(b vec) float64 { return a.x*b.x + a.y*b.y + a.z*b.z }
func (a vec) cross(b vec) vec {
	return vec{a.y*b.z - a.z*b.y, a.z*b.x - a.x*b.z, a.x*b.y - a.y*b.x}
}
func (a vec) norm() float64 { return math.Sqrt(a.dot(a)) }

// angle between two unit vectors, stable for small and large angles.
func angle(a, b vec) float64 { return math.Atan2(a.cross(b).norm(), a.dot(b)) }

// Route is a driver's straight route: the great-circle arc From -> To.
type Route struct {
	From, To Point
}

// LengthMi is the route's length in miles.
func (r Route) LengthMi() float64 { return DistanceMi(r.From, r.To) }

// Project returns the distance in miles from p to the route (to the
// nearest point of the arc) and p's position along it: 0 at From, 1 at To,
// the fraction of the length at which the nearest point lies. Positions are
// clamped to [0, 1]: a point beyond an end projects onto that end. A
// zero-length route is the point From (position 0).
func (r Route) Project(p Point) (distMi, pos float64) {
	a, b, q := toVec(r.From), toVec(r.To), toVec(p)
	length := angle(a, b)
	n := a.cross(b)
	nn := n.norm()
	if length == 0 || nn < 1e-15 {
		// A point route, or ends antipodal (no unique arc): measure from
		// From, the position is where p's distance from From lies.
		d := angle(a, q)
		if length == 0 {
			return EarthRadiusMi * d, 0
		}
		return EarthRadiusMi * math.Min(d, angle(b, q)), clamp01(d / length)
	}
	n = vec{n.x / nn, n.y / nn, n.z / nn}
	// Foot of p on the great circle through a and b.
	s := q.dot(n)
	f := vec{q.x - s*n.x, q.y - s*n.y, q.z - s*n.z}
	fn := f.norm()
	if fn < 1e-15 {
		// p is a pole of the great circle: every point of it is 90° away.
		return EarthRadiusMi * math.Pi / 2, 0
	}
	f = vec{f.x / fn, f.y / fn, f.z / fn}
	// Signed angle of the foot from a along the direction of travel.
	along := math.Atan2(a.cross(f).dot(n), a.dot(f))
	switch {
	case along >= 0 && along <= length:
		return EarthRadiusMi * math.Abs(math.Asin(clampUnit(s))), along / length
	default:
		da, db := angle(a, q), angle(b, q)
		if da <= db {
			return EarthRadiusMi * da, 0
		}
		return EarthRadiusMi * db, 1
	}
}

// DistanceMi is the distance in miles from p to the route.
func (r Route) DistanceMi(p Point) float64 {
	d, _ := r.Project(p)
	return d
}

// DetourMi is how much longer the driver's trip becomes by going From ->
// pickup -> dropoff -> To instead of From -> To, in miles (never negative
// beyond rounding).
func (r Route) DetourMi(pickup, dropoff Point) float64 {
	return DistanceMi(r.From, pickup) + DistanceMi(pickup, dropoff) + DistanceMi(dropoff, r.To) - DistanceMi(r.From, r.To)
}

// Fit is how a rider's trip fits a driver's route.
type Fit struct {
	PickupMi, DropoffMi float64 // distance of pickup and drop-off from the route
	PickupPos, DropPos  float64 // their positions along the route, 0..1
	DetourMi            float64 // extra miles for the driver
}

// FitOf measures the rider's trip pickup -> dropoff against the route.
func (r Route) FitOf(pickup, dropoff Point) Fit {
	var f Fit
	f.PickupMi, f.PickupPos = r.Project(pickup)
	f.DropoffMi, f.DropPos = r.Project(dropoff)
	f.DetourMi = r.DetourMi(pickup, dropoff)
	return f
}

// Matches reports whether the fit meets Hitch's rule with a corridor of
// corridorMi miles: pickup and drop-off both within corridorMi of the route,
// the pickup before the drop-off in the direction of travel.
func (f Fit) Matches(corridorMi float64) bool {
	return f.PickupMi <= corridorMi && f.DropoffMi <= corridorMi && f.PickupPos < f.DropPos
}

func clamp01(x float64) float64 { return math.Max(0, math.Min(1, x)) }
func clampUnit(x float64) float64 {
	return math.Max(-1, math.Min(1, x))
}

// Box is a latitude/longitude rectangle in degrees. MinLon > MaxLon never
// occurs: a box that would cross the antimeridian spans every longitude.
type Box struct {
	MinLat, MaxLat, MinLon, MaxLon float64
}

// Contains reports whether p lies in the box.
func (b Box) Contains(p Point) bool {
	return p.Lat >= b.MinLat && p.Lat <= b.MaxLat && p.Lon >= b.MinLon && p.Lon <= b.MaxLon
}

// Box returns a rectangle holding every point within padMi miles of the
// route: a cheap pre-filter (a database index can use it) before the exact
// Project. It follows the arc (which bulges poleward on long routes) by
// sampling it, pads latitude by padMi and longitude by padMi at the box's
// most poleward latitude, and spans every longitude when the padded arc
// crosses the antimeridian or comes near a pole.
func (r Route) Box(padMi float64) Box {
	const n = 64
	a, b := toVec(r.From), toVec(r.To)
	om := angle(a, b)
	box := Box{MinLat: 90, MaxLat: -90, MinLon: 180, MaxLon: -180}
	prevLon := r.From.Lon
	wraps := false
	for i := 0; i <= n; i++ {
		p := r.From
		if om > 0 && i > 0 {
			f := float64(i) / n
			s1, s2 := math.Sin((1-f)*om)/math.Sin(om), math.Sin(f*om)/math.Sin(om)
			v := vec{s1*a.x + s2*b.x, s1*a.y + s2*b.y, s1*a.z + s2*b.z}
			p = Point{math.Asin(clampUnit(v.z)) / rad, math.Atan2(v.y, v.x) / rad}
		}
		if math.Abs(p.Lon-prevLon) > 180 {
			wraps = true
		}
		prevLon = p.Lon
		box.MinLat, box.MaxLat = math.Min(box.MinLat, p.Lat), math.Max(box.MaxLat, p.Lat)
		box.MinLon, box.MaxLon = math.Min(box.MinLon, p.Lon), math.Max(box.MaxLon, p.Lon)
	}
	// Between samples the arc strays at most its chord's sagitta.
	seg := om / n
	pad := padMi/MilesPerDegree + seg*seg/8/rad + 1e-9
	box.MinLat, box.MaxLat = box.MinLat-pad, box.MaxLat+pad
	poleward := math.Max(math.Abs(box.MinLat), math.Abs(box.MaxLat))
	if wraps || poleward >= 89 || math.IsNaN(pad+poleward) {
		box.MinLon, box.MaxLon = -180, 180
	} else {
		lonPad := pad/math.Cos(poleward*rad) + seg/rad/math.Cos(poleward*rad)
		box.MinLon, box.MaxLon = box.MinLon-lonPad, box.MaxLon+lonPad
		if box.MinLon < -180 || box.MaxLon > 180 {
			box.MinLon, box.MaxLon = -180, 180
		}
	}
	box.MinLat, box.MaxLat = math.Max(box.MinLat, -90), math.Min(box.MaxLat, 90)
	return box
}
