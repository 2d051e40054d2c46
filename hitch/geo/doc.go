// Package geo is Hitch's geometry on a spherical Earth: great-circle
// distance (haversine, Earth radius 3958.8 mi), the distance from a point to
// a driver's straight route and the point's position along it, the detour of
// picking a rider up and dropping them off, and Index, a concurrency-safe
// grid of cells for "which drivers are near here" searches.
//
// # Geometry choices
//
// Distances are great-circle distances on a sphere of radius EarthRadiusMi
// (the haversine formula, accurate to about 0.5% against the WGS 84
// ellipsoid, which is far below what a 0.5-mile matching corridor cares
// about). A driver's "straight route" from A to B is the great-circle arc
// between them (the shortest path on the sphere), and the distance of a
// point P from it is computed exactly on the sphere (cross-track distance,
// or the distance to the nearer end when P's foot lies beyond an end), not
// with a flat-Earth approximation: it costs a few more trigonometric calls
// but has no error to bound and works across the antimeridian and near the
// poles. TestRouteAgainstDense checks it against a dense sampling of the arc.
//
// Degenerate inputs are answered, not panicked on: a route whose ends
// coincide is a point (every position along it is 0), and NaN or infinite
// coordinates give NaN distances, which compare false with every limit,
// so they never match or show up in a search. Validate coordinates at the
// edge (hitch.Point.Validate) before they reach here.
package geo
