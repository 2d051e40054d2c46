// Package location is Hitch's location service: it owns the drivers' last
// reported positions and answers "which drivers are near here".
//
//	PUT /v1/drivers/me/location {lat, lon}                -> 202 (drivers only)
//	GET /v1/drivers/nearby?lat=&lon=&radius_mi=5&limit=50 -> 200 {drivers: [{id, lat, lon, distance_mi}]}
//
// The nearby search returns the drivers whose last position is within
// radius_mi (great-circle distance, package hitch/geo) of (lat, lon),
// nearest first (ties by id), at most limit of them (default and maximum
// Config.MaxResults, 50): a rider's map needs the nearest few, and a
// response of every driver in a dense city would cost more than the
// search. radius_mi defaults to Config.DefaultRadiusMi and may not exceed
// Config.MaxRadiusMi (both 5): a larger one is refused with 400 naming
// radius_mi rather than silently clamped, so a client never mistakes a
// 5-mile answer for the 20 miles it asked for. Positions older than
// Config.MaxAge (2 minutes) are not shown: a driver who stopped reporting
// has left.
//
// # Pattern: fire-and-forget, at most once
//
// The notes: location updates are many, small and quickly superseded, so
// they need neither a database transaction nor a durable queue; losing one
// costs nothing because the next arrives a few seconds later. The replica
// that receives an update applies it to its own in-memory spatial index
// (geo.Index) and hands it to a background publisher, which sends batches
// to the live topic "topic:"+hitch.TopicLocations (kind
// hitch.KindLocation, payload hitch.DriverLocation). Every replica
// subscribes to that topic and applies the others' updates (its own carry
// its replica id in the "origin" header and are skipped), so a search on
// any replica sees every driver within a broker round trip. Updates are
// stamped by the receiving replica's clock; an older stamp never replaces
// a newer one, so a late duplicate cannot move a driver back.
//
// What at most once costs: an update the broker or a full publish buffer
// drops (counted in Stats) is missing on the other replicas until the
// driver's next report. A replica that starts later gets no snapshot: the
// drivers re-report every few seconds, so it knows everyone active within
// one report interval, and anyone silent longer than MaxAge would not be
// shown anyway. This is the trade the notes make for location.
//
// # Redis
//
// With Config.Redis set, the replicas share one Redis geo set (GEOADD,
// GEOSEARCH) and a sorted set of report times instead of their own
// indexes: the same API, consistent across replicas at once, and warm for
// a new replica; updates are still published to the live topic for other
// listeners. Redis stores latitudes within ±85.05112878° only, so polar
// positions are refused there (400 naming lat). Distances are recomputed
// with geo.DistanceMi from the stored coordinates, so both modes answer the
// same great-circle miles.
//
// The service has no database of its own: nothing about a position needs
// to outlive the next report. GET /healthz answers 200 (with Redis: when
// Redis answers PING).
package location
