package geo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

type pos struct {
	p     Point
	stamp int64
}

// brute is the reference: a scan of every id.
func brute(all map[string]pos, q Query) []Hit {
	var out []Hit
	if !q.Center.Valid() || !(q.RadiusMi > 0) || math.IsInf(q.RadiusMi, 0) {
		return out
	}
	for id, e := range all {
		if e.stamp < q.Since {
			continue
		}
		if d := DistanceMi(q.Center, e.p); d <= q.RadiusMi {
			out = append(out, Hit{ID: id, Point: e.p, DistMi: d, Stamp: e.stamp})
		}
	}
	SortHits(out)
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

func sameHits(t *testing.T, what string, got, want []Hit) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d hits, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i].ID != want[i].ID || math.Abs(got[i].DistMi-want[i].DistMi) > 1e-9 {
			// Equal distances may come in either id order only if distances
			// differ by rounding; ids tie-break exactly, so demand equality.
			t.Fatalf("%s: hit %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// randomPoint draws from a mix of places: a city, the poles and the
// antimeridian, so cells wrap and polar searches are exercised.
func randomPoint(rng *rand.Rand) Point {
	switch rng.IntN(5) {
	case 0: // a 20-mile city
		return Point{37.7 + rng.Float64()*0.3, -122.5 + rng.Float64()*0.4}
	case 1: // north pole cap
		return Point{89.9 + rng.Float64()*0.1, rng.Float64()*360 - 180}
	case 2: // south pole cap
		return Point{-90 + rng.Float64()*0.1, rng.Float64()*360 - 180}
	case 3: // antimeridian strip
		lon := 179.9 + rng.Float64()*0.2
		if lon > 180 {
			lon -= 360
		}
		return Point{rng.Float64()*0.2 - 0.1, lon}
	default: // anywhere
		return Point{rng.Float64()*180 - 90, rng.Float64()*360 - 180}
	}
}

func TestNearbyMatchesBruteForce(t *testing.T) {
	for _, cellMi := range []float64{0.25, 0.5, 5} {
		t.Run(fmt.Sprint("cell ", cellMi), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(cellMi*100)))
			ix := NewIndex(cellMi)
			all := map[string]pos{}
			var buf []Hit
			for step := 0; step < 6000; step++ {
				id := fmt.Sprintf("d%03d", rng.IntN(800))
				switch rng.IntN(10) {
				case 0:
					if ix.Remove(id) != (all[id] != pos{}) {
						t.Fatalf("Remove(%s) disagrees with the model", id)
					}
					delete(all, id)
				default:
					p, st := randomPoint(rng), int64(step)
					if !ix.Update(id, p, st) {
						t.Fatalf("Update(%s, %+v) refused", id, p)
					}
					all[id] = pos{p, st}
				}
				if step%20 == 0 {
					q := Query{Center: randomPoint(rng), RadiusMi: []float64{0.1, 1, 5, 30}[rng.IntN(4)],
						Limit: []int{0, 1, 5, 50}[rng.IntN(4)], Since: int64(rng.IntN(step + 1))}
					buf = ix.Nearby(q, buf)
					sameHits(t, fmt.Sprintf("step %d, %+v", step, q), buf, brute(all, q))
				}
			}
			if ix.Len() != len(all) {
				t.Fatalf("Len %d, want %d", ix.Len(), len(all))
			}
			n := ix.Prune(3000)
			for id, e := range all {
				if e.stamp < 3000 {
					delete(all, id)
					n--
				}
			}
			if n != 0 || ix.Len() != len(all) {
				t.Fatalf("Prune: count off by %d, Len %d, want %d", n, ix.Len(), len(all))
			}
			for id, e := range all {
				if p, st, ok := ix.Get(id); !ok || p != e.p || st != e.stamp {
					t.Fatalf("Get(%s) = %+v %d %v, want %+v", id, p, st, ok, e)
				}
			}
		})
	}
}

func TestUpdateRules(t *testing.T) {
	ix := NewIndex(0.5)
	if ix.Update("a", Point{math.NaN(), 0}, 1) || ix.Update("a", Point{91, 0}, 1) || ix.Update("a", Point{0, math.Inf(1)}, 1) {
		t.Fatal("an invalid position was applied")
	}
	if !ix.Update("a", Point{10, 10}, 5) {
		t.Fatal("first update refused")
	}
	if ix.Update("a", Point{20, 20}, 4) {
		t.Fatal("an older update replaced a newer one")
	}
	if p, _, _ := ix.Get("a"); p != (Point{10, 10}) {
		t.Fatalf("position %+v after a stale update", p)
	}
	if !ix.Update("a", Point{10, 10.5}, 5) { // same stamp: a re-broadcast applies
		t.Fatal("same-stamp update refused")
	}
	// Edges: both poles and both antimeridian spellings.
	for i, p := range []Point{{90, 0}, {-90, 0}, {0, 180}, {0, -180}} {
		ix.Update(fmt.Sprint("e", i), p, 9)
	}
	got := ix.Nearby(Query{Center: Point{0, 180}, RadiusMi: 1}, nil)
	if len(got) != 2 {
		t.Fatalf("lon 180 and -180 are one place: %+v", got)
	}
	got = ix.Nearby(Query{Center: Point{89.99, 123}, RadiusMi: 1}, nil)
	if len(got) != 1 || got[0].ID != "e0" {
		t.Fatalf("near the north pole: %+v", got)
	}
	for _, q := range []Query{
		{Center: Point{0, 180}, RadiusMi: math.NaN()},
		{Center: Point{0, 180}, RadiusMi: math.Inf(1)},
		{Center: Point{0, 180}, RadiusMi: -1},
		{Center: Point{math.NaN(), 180}, RadiusMi: 1},
	} {
		if got := ix.Nearby(q, nil); len(got) != 0 {
			t.Fatalf("%+v: %+v", q, got)
		}
	}
}

// Updates, removes and searches from many goroutines (run with -race);
// afterwards the index agrees with the last write of each id.
func TestConcurrent(t *testing.T) {
	ix := NewIndex(0.5)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			var buf []Hit
			for i := 0; i < 3000; i++ {
				id := fmt.Sprintf("w%d-%d", w, rng.IntN(50))
				p := Point{37.7 + rng.Float64()*0.2, -122.5 + rng.Float64()*0.2}
				switch rng.IntN(4) {
				case 0:
					buf = ix.Nearby(Query{Center: p, RadiusMi: 2, Limit: 10}, buf)
					if !slices.IsSortedFunc(buf, func(a, b Hit) int { return cmpF(a.DistMi, b.DistMi) }) {
						panic("unsorted")
					}
				case 1:
					ix.Remove(id)
				default:
					ix.Update(id, p, int64(i))
				}
			}
		}(w)
	}
	wg.Wait()
	all := ix.Nearby(Query{Center: Point{37.8, -122.4}, RadiusMi: 50}, nil)
	if len(all) != ix.Len() {
		t.Fatalf("a full search finds %d, Len says %d", len(all), ix.Len())
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestNearbyAllocs(t *testing.T) {
	ix, rng := city(100_000)
	buf := make([]Hit, 0, 64)
	q := Query{Center: Point{37.8, -122.4}, RadiusMi: 5, Limit: 50}
	allocs := testing.AllocsPerRun(200, func() {
		q.Center = Point{37.7 + rng.Float64()*0.3, -122.5 + rng.Float64()*0.4}
		buf = ix.Nearby(q, buf)
	})
	if allocs != 0 {
		t.Fatalf("Nearby allocates %v times per search with a reused buffer", allocs)
	}
}

// city fills an index with n drivers in a 20 x 20 mile city.
func city(n int) (*Index, *rand.Rand) {
	rng := rand.New(rand.NewPCG(11, 12))
	ix := NewIndex(0.5)
	for i := 0; i < n; i++ {
		ix.Update(fmt.Sprintf("driver-%06d", i), Point{37.7 + rng.Float64()*0.29, -122.55 + rng.Float64()*0.37}, 1)
	}
	return ix, rng
}

func BenchmarkNearby(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		for _, limit := range []int{20, 0} {
			b.Run(fmt.Sprintf("drivers=%d/limit=%d", n, limit), func(b *testing.B) {
				ix, rng := city(n)
				var buf []Hit
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					buf = ix.Nearby(Query{Center: Point{37.7 + rng.Float64()*0.29, -122.55 + rng.Float64()*0.37}, RadiusMi: 5, Limit: limit}, buf)
				}
			})
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	ix, rng := city(100_000)
	ids := make([]string, 100_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("driver-%06d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ix.Update(ids[i%len(ids)], Point{37.7 + rng.Float64()*0.29, -122.55 + rng.Float64()*0.37}, int64(i))
	}
}

func BenchmarkDistance(b *testing.B) {
	r := Route{Point{37.70, -122.50}, Point{37.82, -122.36}}
	p := Point{37.75, -122.45}
	b.ReportAllocs()
	var s float64
	for i := 0; i < b.N; i++ {
		d, pos := r.Project(p)
		s += d + pos + DistanceMi(r.From, p)
	}
	_ = s
}

// Fuzz: any coordinates (poles, antimeridian, NaN, Inf, out of range) give
// either nothing or the brute-force answer, never a panic; projections of
// valid inputs stay in range.
func FuzzGeo(f *testing.F) {
	f.Add(90.0, 0.0, -90.0, 180.0, 0.0, -180.0, 5.0)
	f.Add(0.0, 179.999, 0.0, -179.999, 0.0, 180.0, 1.0)
	f.Add(math.NaN(), 0.0, 0.0, math.Inf(1), 0.0, 0.0, math.NaN())
	f.Add(37.7, -122.4, 37.8, -122.3, 37.75, -122.35, 0.5)
	f.Fuzz(func(t *testing.T, aLat, aLon, bLat, bLon, pLat, pLon, radius float64) {
		a, b, p := Point{aLat, aLon}, Point{bLat, bLon}, Point{pLat, pLon}
		d, at := Route{a, b}.Project(p)
		if a.Valid() && b.Valid() && p.Valid() {
			if !(d >= 0 && d <= EarthRadiusMi*math.Pi+1e-6) || !(at >= 0 && at <= 1) {
				t.Fatalf("Project(%+v, %+v; %+v) = %v, %v", a, b, p, d, at)
			}
			if dd := DistanceMi(a, p); !(dd >= 0 && dd <= EarthRadiusMi*math.Pi+1e-6) {
				t.Fatalf("DistanceMi = %v", dd)
			}
		}
		ix := NewIndex(0.5)
		all := map[string]pos{}
		for i, q := range []Point{a, b, p} {
			id := fmt.Sprint(i)
			if ix.Update(id, q, 1) {
				all[id] = pos{q, 1}
			} else if q.Valid() {
				t.Fatalf("valid %+v refused", q)
			}
		}
		q := Query{Center: p, RadiusMi: radius}
		if radius > 100 {
			q.RadiusMi = 100
		}
		sameHits(t, fmt.Sprintf("%+v", q), ix.Nearby(q, nil), brute(all, q))
		q.Limit = 1
		sameHits(t, fmt.Sprintf("%+v", q), ix.Nearby(q, nil), brute(all, q))
	})
}
