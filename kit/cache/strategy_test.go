package cache

import (
	"context"
	"errors"
	"testing"
)

func TestWriteThrough(t *testing.T) {
	ctx := context.Background()
	c := newT(t, Options[[]byte]{})
	s := &mapStore{}
	wt := WriteThrough[[]byte]{Cache: c, Store: s}
	if err := wt.Set(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get("k"); string(v) != "v1" || err != nil {
		t.Fatalf("cache after write-through: %q %v", v, err)
	}
	if v, _ := s.Load(ctx, "k"); string(v) != "v1" {
		t.Fatalf("store after write-through: %q", v)
	}
	// A failing store: the write fails and the old cached value is gone.
	boom := errors.New("disk full")
	s.setFail(boom)
	if err := wt.Set(ctx, "k", []byte("v2")); !errors.Is(err, boom) {
		t.Fatalf("write-through to a failing store: %v", err)
	}
	if _, err := c.Get("k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("cache after a failed write-through: %v, want invalidated", err)
	}
	s.setFail(nil)
	if v, err := wt.Get(ctx, "k"); string(v) != "v1" || err != nil {
		t.Fatalf("read after the failed write reloads the store's value: %q %v", v, err)
	}
	if err := wt.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestWriteAround(t *testing.T) {
	ctx := context.Background()
	c := newT(t, Options[[]byte]{})
	s := &mapStore{}
	wa := WriteAround[[]byte]{Cache: c, Store: s}
	c.Set("k", []byte("old"))
	if err := wa.Set(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("write-around must not fill the cache and must drop the old value: %v", err)
	}
	if v, err := wa.Get(ctx, "k"); string(v) != "v1" || err != nil {
		t.Fatalf("read after write-around: %q %v", v, err)
	}
	if v, err := c.Get("k"); string(v) != "v1" || err != nil {
		t.Fatalf("the read filled the cache: %q %v", v, err)
	}
	s.setFail(errors.New("down"))
	if err := wa.Set(ctx, "k", []byte("v2")); err == nil {
		t.Fatal("write-around to a failing store succeeded")
	}
	if _, err := c.Get("k"); !errors.Is(err, ErrMiss) {
		t.Fatalf("cache after a failed write-around: %v, want invalidated", err)
	}
}

func TestReadThroughAndCacheAside(t *testing.T) {
	ctx := context.Background()
	c := newT(t, Options[[]byte]{NegativeTTL: 1 << 40})
	s := &mapStore{m: map[string][]byte{"a": []byte("1")}}
	rt := ReadThrough[[]byte]{Cache: c, Load: s.Load}
	for range 3 {
		if v, err := rt.Get(ctx, "a"); string(v) != "1" || err != nil {
			t.Fatalf("%q %v", v, err)
		}
		if _, err := rt.Get(ctx, "zz"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("absent key: %v", err)
		}
	}
	if st := c.Stats(); st.Loads != 2 || st.Hits != 2 || st.NegativeHits != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Cache-aside by hand: the application checks, loads and fills.
	if _, err := c.Get("b"); errors.Is(err, ErrMiss) {
		v := []byte("from-db")
		c.Set("b", v)
	}
	if v, _ := c.Get("b"); string(v) != "from-db" {
		t.Fatalf("cache-aside fill: %q", v)
	}
}
