// Package cache provides the caching strategies services put in front of a
// store: cache-aside, read-through, write-through, write-around,
// write-behind (a durable local buffer flushed in batches) and
// refresh-ahead, over a bytes-bounded in-process cache (LRU, LFU or FIFO
// eviction, TTL with jitter, negative caching, one load per key) and an
// optional Redis tier shared by replicas with invalidation on write.
package cache
