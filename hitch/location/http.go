package location

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/geo"
)

// Handler serves PUT /v1/drivers/me/location, GET /v1/drivers/nearby and
// GET /healthz.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/drivers/me/location", s.serveUpdate)
	mux.HandleFunc("GET /v1/drivers/nearby", s.serveNearby)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux
}

var jsonType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}

func caller(w http.ResponseWriter, r *http.Request) (hitch.Caller, bool) {
	c, ok := hitch.CallerOf(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no authenticated user: the gateway sets "+hitch.HeaderUser+" and "+hitch.HeaderScopes)
	}
	return c, ok
}

func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.pos.ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "redis_down", "redis: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// serveUpdate: PUT /v1/drivers/me/location {lat, lon} -> 202.
func (s *Service) serveUpdate(w http.ResponseWriter, r *http.Request) {
	c, ok := caller(w, r)
	if !ok {
		return
	}
	if c.Role != hitch.RoleDriver {
		writeError(w, http.StatusForbidden, "forbidden", "only drivers report a location; the caller is a "+c.Role)
		return
	}
	var body struct {
		Lat *float64 `json:"lat"`
		Lon *float64 `json:"lon"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_json", "body: want {\"lat\": number, \"lon\": number}: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad_json", "body: want one JSON object, found more after it")
		return
	}
	if body.Lat == nil || body.Lon == nil {
		writeError(w, http.StatusBadRequest, "missing_field", "body: lat and lon are both required")
		return
	}
	p := geo.Point{Lat: *body.Lat, Lon: *body.Lon}
	if field, msg := s.checkPoint(p); field != "" {
		writeError(w, http.StatusBadRequest, "invalid_"+field, msg)
		return
	}
	now := time.Now()
	if err := s.pos.update(r.Context(), c.ID, p, now); err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "storing the position: "+err.Error())
		return
	}
	s.enqueue(c.ID, p, now)
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}

// checkPoint names the bad coordinate of p, if any.
func (s *Service) checkPoint(p geo.Point) (field, msg string) {
	maxLat := 90.0
	if s.pos.shared() {
		maxLat = redisMaxLat
	}
	switch {
	case !(p.Lat >= -maxLat && p.Lat <= maxLat):
		return "lat", fmt.Sprintf("lat: want a number in [%v, %v], got %v", -maxLat, maxLat, p.Lat)
	case !(p.Lon >= -180 && p.Lon <= 180):
		return "lon", fmt.Sprintf("lon: want a number in [-180, 180], got %v", p.Lon)
	}
	return "", ""
}

// search is the reusable state of one nearby search.
type search struct {
	hits []geo.Hit
	buf  []byte
}

var searches = sync.Pool{New: func() any { return &search{buf: make([]byte, 0, 4096)} }}

// serveNearby: GET /v1/drivers/nearby?lat=&lon=&radius_mi=&limit=. The hot
// path: the query is parsed in place and the answer written from a pooled
// buffer, so a search allocates next to nothing.
func (s *Service) serveNearby(w http.ResponseWriter, r *http.Request) {
	if _, ok := caller(w, r); !ok {
		return
	}
	q := geo.Query{RadiusMi: s.cfg.DefaultRadiusMi, Limit: s.cfg.MaxResults}
	var haveLat, haveLon bool
	for rest := r.URL.RawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				v = u
			}
		}
		switch k {
		case "lat":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= -90 && f <= 90) {
				writeError(w, http.StatusBadRequest, "invalid_lat", "lat: want a number in [-90, 90], got "+quote(v))
				return
			}
			q.Center.Lat, haveLat = f, true
		case "lon":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= -180 && f <= 180) {
				writeError(w, http.StatusBadRequest, "invalid_lon", "lon: want a number in [-180, 180], got "+quote(v))
				return
			}
			q.Center.Lon, haveLon = f, true
		case "radius_mi":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0 && f <= s.cfg.MaxRadiusMi) {
				writeError(w, http.StatusBadRequest, "invalid_radius_mi",
					fmt.Sprintf("radius_mi: want miles in (0, %v], got %s", s.cfg.MaxRadiusMi, quote(v)))
				return
			}
			q.RadiusMi = f
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > s.cfg.MaxResults {
				writeError(w, http.StatusBadRequest, "invalid_limit",
					fmt.Sprintf("limit: want an integer in [1, %d], got %s", s.cfg.MaxResults, quote(v)))
				return
			}
			q.Limit = n
		}
	}
	if !haveLat || !haveLon {
		writeError(w, http.StatusBadRequest, "missing_field", "lat and lon are both required query parameters")
		return
	}
	q.Since = time.Now().Add(-s.cfg.MaxAge).UnixNano()
	sr := searches.Get().(*search)
	defer searches.Put(sr)
	var err error
	sr.hits, err = s.pos.nearby(r.Context(), q, sr.hits)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "searching: "+err.Error())
		return
	}
	b := append(sr.buf[:0], `{"drivers":[`...)
	for i, h := range sr.hits {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, h.ID)
		b = append(b, `,"lat":`...)
		b = strconv.AppendFloat(b, h.Point.Lat, 'f', -1, 64)
		b = append(b, `,"lon":`...)
		b = strconv.AppendFloat(b, h.Point.Lon, 'f', -1, 64)
		b = append(b, `,"distance_mi":`...)
		b = strconv.AppendFloat(b, math.Round(h.DistMi*1e4)/1e4, 'f', -1, 64)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	sr.buf = b
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func quote(v string) string {
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
