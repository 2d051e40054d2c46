package cache

import (
	"context"
	"errors"
	"fmt"
)

// Layer is a cache the strategies wrap: the in-process *Cache or the
// two-level *Tiered.
type Layer[V any] interface {
	// GetOrLoad returns the cached value or loads, caches and returns it.
	GetOrLoad(ctx context.Context, key string, load Loader[V]) (V, error)
	// Put caches v under key.
	Put(ctx context.Context, key string, v V) error
	// Invalidate drops key (everywhere the layer reaches).
	Invalidate(ctx context.Context, key string) error
}

// Store is the system of record behind a cache.
type Store[V any] interface {
	// Load returns key's value, or ErrNotFound.
	Load(ctx context.Context, key string) (V, error)
	// Save writes key's value.
	Save(ctx context.Context, key string, v V) error
	// Remove deletes key; removing an absent key is not an error.
	Remove(ctx context.Context, key string) error
}

// ReadThrough reads through a cache: the application asks the cache, and
// the cache (not the application) loads misses from the Loader.
type ReadThrough[V any] struct {
	Cache Layer[V]
	Load  Loader[V]
}

// Get returns key's value from the cache, loading it on a miss.
func (r ReadThrough[V]) Get(ctx context.Context, key string) (V, error) {
	return r.Cache.GetOrLoad(ctx, key, r.Load)
}

// WriteThrough writes to the store and then to the cache, in that order,
// so the cache never holds a value the store refused. On a store failure
// the cache's entry is invalidated (the store's state is unknown). Reads
// go through the cache and load misses from the store.
type WriteThrough[V any] struct {
	Cache Layer[V]
	Store Store[V]
}

// Get returns key's value from the cache, loading it from the store.
func (w WriteThrough[V]) Get(ctx context.Context, key string) (V, error) {
	return w.Cache.GetOrLoad(ctx, key, w.Store.Load)
}

// Set saves v in the store, then caches it.
func (w WriteThrough[V]) Set(ctx context.Context, key string, v V) error {
	if err := w.Store.Save(ctx, key, v); err != nil {
		return errors.Join(fmt.Errorf("write-through: saving %q: %w", key, err), w.Cache.Invalidate(ctx, key))
	}
	if err := w.Cache.Put(ctx, key, v); err != nil {
		// The store has v; an old cached value must not outlive it.
		return errors.Join(fmt.Errorf("write-through: caching %q: %w", key, err), w.Cache.Invalidate(ctx, key))
	}
	return nil
}

// Delete removes key from the store, then from the cache (also when the
// store fails).
func (w WriteThrough[V]) Delete(ctx context.Context, key string) error {
	return removeAndInvalidate(ctx, "write-through", w.Cache, w.Store, key)
}

// WriteAround writes to the store only and invalidates the cache; the next
// read loads the new value. Suits data written much more often than read
// back soon: writes do not fill the cache.
type WriteAround[V any] struct {
	Cache Layer[V]
	Store Store[V]
}

// Get returns key's value from the cache, loading it from the store.
func (w WriteAround[V]) Get(ctx context.Context, key string) (V, error) {
	return w.Cache.GetOrLoad(ctx, key, w.Store.Load)
}

// Set saves v in the store and invalidates key in the cache (also when
// the store fails: its state is then unknown).
func (w WriteAround[V]) Set(ctx context.Context, key string, v V) error {
	var err error
	if e := w.Store.Save(ctx, key, v); e != nil {
		err = fmt.Errorf("write-around: saving %q: %w", key, e)
	}
	if e := w.Cache.Invalidate(ctx, key); e != nil {
		err = errors.Join(err, fmt.Errorf("write-around: invalidating %q: %w", key, e))
	}
	return err
}

// Delete removes key from the store, then from the cache.
func (w WriteAround[V]) Delete(ctx context.Context, key string) error {
	return removeAndInvalidate(ctx, "write-around", w.Cache, w.Store, key)
}

func removeAndInvalidate[V any](ctx context.Context, who string, c Layer[V], s Store[V], key string) error {
	var err error
	if e := s.Remove(ctx, key); e != nil {
		err = fmt.Errorf("%s: removing %q: %w", who, key, e)
	}
	if e := c.Invalidate(ctx, key); e != nil {
		err = errors.Join(err, fmt.Errorf("%s: invalidating %q: %w", who, key, e))
	}
	return err
}
