package cache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/switchyard/switchyard/kit/cache"
)

// users is a stand-in for a database table.
type users struct {
	mu    sync.Mutex
	rows  map[string]string
	reads int
}

func (u *users) Load(_ context.Context, id string) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reads++
	name, ok := u.rows[id]
	if !ok {
		return "", fmt.Errorf("user %s: %w", id, cache.ErrNotFound)
	}
	return name, nil
}

func (u *users) Save(_ context.Context, id, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rows[id] = name
	return nil
}

func (u *users) Remove(_ context.Context, id string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.rows, id)
	return nil
}

// Read-through with negative caching, then write-through.
func Example() {
	ctx := context.Background()
	db := &users{rows: map[string]string{"1": "ada"}}
	c, err := cache.New(cache.Options[string]{
		MaxBytes:      1 << 20,
		Policy:        cache.LRU,
		TTL:           time.Minute,
		JitterPercent: 10,
		NegativeTTL:   5 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	store := cache.WriteThrough[string]{Cache: c, Store: db}
	for range 3 {
		name, _ := store.Get(ctx, "1")
		_, err := store.Get(ctx, "2")
		fmt.Println(name, errors.Is(err, cache.ErrNotFound))
	}
	store.Set(ctx, "1", "grace") // the database first, then the cache
	name, _ := store.Get(ctx, "1")
	s := c.Stats()
	fmt.Printf("%s: database reads %d, hits %d, negative hits %d\n", name, db.reads, s.Hits, s.NegativeHits)
	// Output:
	// ada true
	// ada true
	// ada true
	// grace: database reads 2, hits 3, negative hits 2
}

// Write-behind: Set returns once the write is fsynced in a local buffer;
// the store gets it in a batch shortly after.
func ExampleWriteBehind() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "write-behind")
	defer os.RemoveAll(dir)
	db := &users{rows: map[string]string{}}
	c, _ := cache.New(cache.Options[string]{})
	defer c.Close()
	wb, err := cache.OpenWriteBehind(c, db, cache.WriteBehindOptions[string]{
		Path:  filepath.Join(dir, "buffer.db"),
		Codec: cache.StringCodec(),
	})
	if err != nil {
		panic(err)
	}
	defer wb.Close()
	for i := range 100 {
		wb.Set(ctx, fmt.Sprint("user-", i%10), fmt.Sprint("name-", i))
	}
	v, _ := wb.Get(ctx, "user-3") // read-your-writes, flushed or not
	wb.Flush(ctx)
	fmt.Println(v, len(db.rows), db.rows["user-9"], wb.Pending())
	// Output: name-93 10 name-99 0
}
