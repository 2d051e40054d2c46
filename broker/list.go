package broker

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
