package location

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchyard/switchyard/hitch/geo"
)

// redisMaxLat is the largest latitude Redis's geo commands accept.
const redisMaxLat = 85.05112878

// redisIndex keeps positions in Redis, shared by every replica:
// KEY:geo, a geo set (GEOADD lon lat id), and KEY:seen, a sorted set of
// each id's report time (unix ms), updated together in MULTI/EXEC.
type redisIndex struct {
	c         *redis.Client
	geo, seen string
}

func openRedis(ctx context.Context, rawURL, key string) (*redisIndex, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("location: redis: parsing %q: %w", rawURL, err)
	}
	c := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("location: redis at %s: %w", opts.Addr, err)
	}
	return &redisIndex{c: c, geo: key + ":geo", seen: key + ":seen"}, nil
}

func (r *redisIndex) update(ctx context.Context, id string, p geo.Point, at time.Time) error {
	_, err := r.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.GeoAdd(ctx, r.geo, &redis.GeoLocation{Name: id, Longitude: p.Lon, Latitude: p.Lat})
		pipe.ZAdd(ctx, r.seen, redis.Z{Score: float64(at.UnixMilli()), Member: id})
		return nil
	})
	return err
}

// nearby asks GEOSEARCH for the nearest, then drops the stale ones (report
// time before q.Since); when stale ones filled the count, it asks again
// for more. Distances are recomputed with geo.DistanceMi (Redis's Earth
// radius differs from ours by 0.03%).
func (r *redisIndex) nearby(ctx context.Context, q geo.Query, dst []geo.Hit) ([]geo.Hit, error) {
	dst = dst[:0]
	if q.Center.Lat > redisMaxLat || q.Center.Lat < -redisMaxLat {
		// Redis cannot search from there (nothing is stored there either,
		// but the circle may reach below the limit): scan and filter.
		return r.filterAll(ctx, q, dst)
	}
	count := q.Limit
	for {
		locs, err := r.c.GeoSearchLocation(ctx, r.geo, &redis.GeoSearchLocationQuery{
			GeoSearchQuery: redis.GeoSearchQuery{
				Longitude: q.Center.Lon, Latitude: q.Center.Lat,
				Radius: q.RadiusMi * 1.001, RadiusUnit: "mi", Sort: "ASC", Count: count,
			},
			WithCoord: true,
		}).Result()
		if err != nil {
			return dst, fmt.Errorf("redis GEOSEARCH %s: %w", r.geo, err)
		}
		var err2 error
		dst, err2 = r.keepFresh(ctx, q, locs, dst[:0])
		if err2 != nil {
			return dst, err2
		}
		if count <= 0 || len(locs) < count || len(dst) >= q.Limit {
			break
		}
		count *= 4 // stale entries took slots: look further
	}
	return sortAndCut(dst, q.Limit), nil
}

func (r *redisIndex) keepFresh(ctx context.Context, q geo.Query, locs []redis.GeoLocation, dst []geo.Hit) ([]geo.Hit, error) {
	if len(locs) == 0 {
		return dst, nil
	}
	ids := make([]string, len(locs))
	for i, l := range locs {
		ids[i] = l.Name
	}
	seen, err := r.c.ZMScore(ctx, r.seen, ids...).Result()
	if err != nil {
		return dst, fmt.Errorf("redis ZMSCORE %s: %w", r.seen, err)
	}
	sinceMs := q.Since / int64(time.Millisecond)
	for i, l := range locs {
		if int64(seen[i]) < sinceMs {
			continue
		}
		p := geo.Point{Lat: l.Latitude, Lon: l.Longitude}
		d := geo.DistanceMi(q.Center, p)
		if d > q.RadiusMi {
			continue
		}
		dst = append(dst, geo.Hit{ID: l.Name, Point: p, DistMi: d, Stamp: int64(seen[i]) * int64(time.Millisecond)})
	}
	return dst, nil
}

// filterAll scans every stored position: only for centres Redis cannot
// search from (beyond ±85.05°), where few if any drivers can be near.
func (r *redisIndex) filterAll(ctx context.Context, q geo.Query, dst []geo.Hit) ([]geo.Hit, error) {
	locs, err := r.c.GeoSearchLocation(ctx, r.geo, &redis.GeoSearchLocationQuery{
		GeoSearchQuery: redis.GeoSearchQuery{
			Longitude: 0, Latitude: 0, BoxWidth: 40000, BoxHeight: 40000, BoxUnit: "km",
		},
		WithCoord: true,
	}).Result()
	if err != nil {
		return dst, fmt.Errorf("redis GEOSEARCH %s: %w", r.geo, err)
	}
	dst, err = r.keepFresh(ctx, q, locs, dst)
	return sortAndCut(dst, q.Limit), err
}

func sortAndCut(h []geo.Hit, limit int) []geo.Hit {
	geo.SortHits(h)
	if limit > 0 && len(h) > limit {
		h = h[:limit]
	}
	return h
}

func (r *redisIndex) prune(ctx context.Context, before time.Time) (int, error) {
	ids, err := r.c.ZRangeByScore(ctx, r.seen, &redis.ZRangeBy{Min: "-inf", Max: "(" + strconv.FormatInt(before.UnixMilli(), 10)}).Result()
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	// Remove only those still stale: a driver who reported meanwhile stays.
	n := 0
	for _, id := range ids {
		removed, err := pruneOne.Run(ctx, r.c, []string{r.geo, r.seen}, id, before.UnixMilli()).Int()
		if err != nil {
			return n, fmt.Errorf("redis: pruning %q: %w", id, err)
		}
		n += removed
	}
	return n, nil
}

var pruneOne = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if s and tonumber(s) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0`)

func (r *redisIndex) shared() bool                   { return true }
func (r *redisIndex) ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }
func (r *redisIndex) close() error                   { return r.c.Close() }
