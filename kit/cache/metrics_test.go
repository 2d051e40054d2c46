package cache

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	c := newT(t, Options[[]byte]{MaxBytes: 2 * unit})
	c.Set("k0", val(0))
	c.Set("k1", val(1))
	c.Set("k2", val(2)) // evicts k0
	c.Get("k1")
	c.Get("k0")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector("users", c.Stats))
	want := `
# HELP switchyard_cache_bytes Bytes accounted to cached entries now.
# TYPE switchyard_cache_bytes gauge
switchyard_cache_bytes{cache="users"} 216
# HELP switchyard_cache_evictions_total Entries evicted to stay under the byte bound.
# TYPE switchyard_cache_evictions_total counter
switchyard_cache_evictions_total{cache="users"} 1
# HELP switchyard_cache_hits_total Reads answered with a cached value.
# TYPE switchyard_cache_hits_total counter
switchyard_cache_hits_total{cache="users"} 1
# HELP switchyard_cache_misses_total Reads that found nothing cached (or an expired entry).
# TYPE switchyard_cache_misses_total counter
switchyard_cache_misses_total{cache="users"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"switchyard_cache_bytes", "switchyard_cache_evictions_total", "switchyard_cache_hits_total", "switchyard_cache_misses_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewCollector("x", c.Stats)); n != 10 {
		t.Fatalf("%d metrics, want 10", n)
	}
}
