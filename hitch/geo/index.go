package geo

import (
	"math"
	"slices"
	"sync"
)

// Index is a spatial index of moving ids (drivers) for nearby searches: a
// grid of cells of about CellMi miles on a side (latitude and longitude
// bands of the same number of degrees, 360/cols each, so longitude wraps
// exactly at the antimeridian), each cell holding the ids last seen in it.
// Update moves an id between cells in O(1); Nearby visits only the cells of
// the search circle's bounding box and, when asked for the nearest k, starts
// with a small circle and doubles it until k are inside, so a dense city
// costs a few cells, not the whole radius.
//
// Safe for concurrent use: one RWMutex; searches share it, updates take it
// for a map write and a slice swap. The zero value is not usable: use
// NewIndex.
type Index struct {
	step       float64 // degrees per cell, both axes
	cols, rows int64

	mu    sync.RWMutex
	cells map[int64]*cell
	where map[string]slot
}

type cell struct {
	items []item
}

type item struct {
	id     string
	p      Point
	cosLat float64
	stamp  int64
}

type slot struct {
	key int64
	i   int32
}

// Hit is one result of Nearby.
type Hit struct {
	ID     string
	Point  Point
	DistMi float64
	Stamp  int64 // as given to Update
}

// NewIndex returns an empty index with cells of about cellMi miles (north to
// south; east to west they narrow with the cosine of the latitude). cellMi
// <= 0 takes 0.5. A cell of a tenth of the usual search radius keeps a
// search for the nearest few in a dense city to a handful of cells.
func NewIndex(cellMi float64) *Index {
	if !(cellMi > 0) {
		cellMi = 0.5
	}
	cols := int64(math.Ceil(360 / (cellMi / MilesPerDegree)))
	if cols < 4 {
		cols = 4
	}
	step := 360 / float64(cols)
	return &Index{
		step: step, cols: cols, rows: int64(math.Ceil(180 / step)),
		cells: map[int64]*cell{}, where: map[string]slot{},
	}
}

func (ix *Index) rowOf(lat float64) int64 {
	r := int64(math.Floor((lat + 90) / ix.step))
	return min(max(r, 0), ix.rows-1)
}

func (ix *Index) colOf(lon float64) int64 {
	c := int64(math.Floor((lon + 180) / ix.step))
	c %= ix.cols
	if c < 0 {
		c += ix.cols
	}
	return c
}

// Update records id at p with stamp (the time of the report, any
// monotonic unit): it moves id to p's cell. A stamp older than the one
// recorded is ignored (an update that arrived late), and so is a position
// that is not on Earth. It reports whether it applied.
func (ix *Index) Update(id string, p Point, stamp int64) bool {
	if !p.Valid() {
		return false
	}
	key := ix.rowOf(p.Lat)*ix.cols + ix.colOf(p.Lon)
	it := item{id: id, p: p, cosLat: math.Cos(p.Lat * rad), stamp: stamp}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s, ok := ix.where[id]; ok {
		c := ix.cells[s.key]
		if c.items[s.i].stamp > stamp {
			return false
		}
		if s.key == key {
			it.id = c.items[s.i].id // keep the stored string
			c.items[s.i] = it
			return true
		}
		ix.removeLocked(s)
	}
	c := ix.cells[key]
	if c == nil {
		c = &cell{}
		ix.cells[key] = c
	}
	c.items = append(c.items, it)
	ix.where[id] = slot{key: key, i: int32(len(c.items) - 1)}
	return true
}

// removeLocked takes the item at s out of its cell (swapping the last one
// into its place) and forgets its slot. ix.mu must be held.
func (ix *Index) removeLocked(s slot) {
	c := ix.cells[s.key]
	id := c.items[s.i].id
	last := len(c.items) - 1
	if int(s.i) != last {
		c.items[s.i] = c.items[last]
		ix.where[c.items[s.i].id] = slot{key: s.key, i: s.i}
	}
	c.items[last] = item{}
	c.items = c.items[:last]
	if len(c.items) == 0 {
		delete(ix.cells, s.key)
	}
	delete(ix.where, id)
}

// Remove forgets id; it reports whether it was there.
func (ix *Index) Remove(id string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s, ok := ix.where[id]
	if ok {
		ix.removeLocked(s)
	}
	return ok
}

// Prune removes every id whose stamp is older than before and returns how
// many it removed.
func (ix *Index) Prune(before int64) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := 0
	for key, c := range ix.cells {
		for i := 0; i < len(c.items); {
			if c.items[i].stamp < before {
				ix.removeLocked(slot{key: key, i: int32(i)})
				n++
				if ix.cells[key] == nil {
					break
				}
				continue // the last item moved into i
			}
			i++
		}
	}
	return n
}

// Len is the number of ids in the index.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.where)
}

// Get returns id's last position and stamp.
func (ix *Index) Get(id string) (Point, int64, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	s, ok := ix.where[id]
	if !ok {
		return Point{}, 0, false
	}
	it := ix.cells[s.key].items[s.i]
	return it.p, it.stamp, true
}

// Query is a nearby search.
type Query struct {
	Center   Point
	RadiusMi float64 // great-circle radius; <= 0 or NaN finds nothing
	Limit    int     // the nearest Limit hits; <= 0: every hit in the radius
	Since    int64   // skip ids whose stamp is older than this
}

// Nearby appends to dst[:0] the ids within q.RadiusMi of q.Center (great-
// circle distance, boundary included) whose stamp is at least q.Since,
// nearest first (ties by id), at most q.Limit of them, and returns it. Pass
// the previous result back as dst to search without allocating.
func (ix *Index) Nearby(q Query, dst []Hit) []Hit {
	dst = dst[:0]
	if !q.Center.Valid() || !(q.RadiusMi > 0) || math.IsInf(q.RadiusMi, 0) {
		return dst
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r := q.RadiusMi
	if q.Limit > 0 {
		// Start with a circle expected to hold a few cells and double it
		// until Limit hits are inside: those are then the nearest.
		r = min(r, ix.step*MilesPerDegree)
	}
	for {
		dst = ix.scanLocked(q, r, dst[:0])
		if r >= q.RadiusMi || len(dst) >= q.Limit {
			break
		}
		r = min(2*r, q.RadiusMi)
	}
	SortHits(dst)
	if q.Limit > 0 && len(dst) > q.Limit {
		dst = dst[:q.Limit]
	}
	return dst
}

// scanLocked appends every hit within r of q.Center from the cells of the
// circle's bounding box. When q.Limit is set it keeps only the nearest
// q.Limit (a max-heap on distance at dst's front) once it has that many.
func (ix *Index) scanLocked(q Query, r float64, dst []Hit) []Hit {
	c := q.Center
	// Haversine h for the radius: a point is inside iff its h <= maxH.
	sr := math.Sin(r / EarthRadiusMi / 2)
	maxH := sr * sr
	if r/EarthRadiusMi >= math.Pi {
		maxH = 1
	}
	slack := 1e-9 + ix.step*1e-9
	dLat := r/MilesPerDegree + slack
	latMin, latMax := c.Lat-dLat, c.Lat+dLat
	allLon := latMin <= -90 || latMax >= 90
	var dLon float64
	if !allLon {
		// Exact half-width of the circle's longitude span.
		s := math.Sin(r/EarthRadiusMi) / math.Cos(c.Lat*rad)
		if s >= 1 {
			allLon = true
		} else {
			dLon = math.Asin(s)/rad + slack
			allLon = dLon >= 180
		}
	}
	r0, r1 := ix.rowOf(latMin), ix.rowOf(latMax)
	var c0, c1 int64
	if allLon {
		c0, c1 = 0, ix.cols-1
	} else {
		c0 = int64(math.Floor((c.Lon - dLon + 180) / ix.step))
		c1 = int64(math.Floor((c.Lon + dLon + 180) / ix.step))
		if c1-c0 >= ix.cols {
			c0, c1 = 0, ix.cols-1
		}
	}
	cosC := math.Cos(c.Lat * rad)
	visit := func(cl *cell) {
		for i := range cl.items {
			it := &cl.items[i]
			// The great-circle distance is at least the latitude difference:
			// a comparison spares the sines for the rows' far ends.
			if dl := it.p.Lat - c.Lat; it.stamp < q.Since || dl > dLat || dl < -dLat {
				continue
			}
			s1 := math.Sin((it.p.Lat - c.Lat) * rad / 2)
			s2 := math.Sin((it.p.Lon - c.Lon) * rad / 2)
			h := s1*s1 + cosC*it.cosLat*s2*s2
			if !(h <= maxH) {
				continue
			}
			hit := Hit{ID: it.id, Point: it.p, DistMi: EarthRadiusMi * 2 * math.Asin(math.Sqrt(min(h, 1))), Stamp: it.stamp}
			dst = push(dst, hit, q.Limit)
		}
	}
	if (r1-r0+1)*(c1-c0+1) > int64(len(ix.cells)) {
		// Fewer occupied cells than cells in the box (near a pole, or a
		// sparse index): walk the occupied ones instead.
		for key, cl := range ix.cells {
			if row := key / ix.cols; row >= r0 && row <= r1 {
				visit(cl)
			}
		}
		return dst
	}
	for row := r0; row <= r1; row++ {
		for col := c0; col <= c1; col++ {
			cc := col % ix.cols
			if cc < 0 {
				cc += ix.cols
			}
			if cl := ix.cells[row*ix.cols+cc]; cl != nil {
				visit(cl)
			}
		}
	}
	return dst
}

// push adds hit to dst; with limit > 0 it keeps only the nearest limit,
// as a max-heap once full.
func push(dst []Hit, hit Hit, limit int) []Hit {
	if limit <= 0 || len(dst) < limit {
		dst = append(dst, hit)
		if limit > 0 && len(dst) == limit {
			heapify(dst)
		}
		return dst
	}
	if less(hit, dst[0]) {
		dst[0] = hit
		siftDown(dst, 0)
	}
	return dst
}

func less(a, b Hit) bool {
	if a.DistMi != b.DistMi {
		return a.DistMi < b.DistMi
	}
	return a.ID < b.ID
}

// heapify makes h a max-heap on less (the farthest at h[0]).
func heapify(h []Hit) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

func siftDown(h []Hit, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		big := l
		if r := l + 1; r < n && less(h[l], h[r]) {
			big = r
		}
		if !less(h[i], h[big]) {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}

// SortHits sorts hits nearest first, ties by id (Nearby's order).
func SortHits(h []Hit) {
	slices.SortFunc(h, func(a, b Hit) int {
		switch {
		case less(a, b):
			return -1
		case less(b, a):
			return 1
		}
		return 0
	})
}
