package engine

import "sort"

// Topics returns the names of the topics, sorted.
func (b *Broker) Topics() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return sortedKeys(b.topics)
}

// Streams returns the names of the streams, sorted.
func (b *Broker) Streams() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return sortedKeys(b.streams)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
