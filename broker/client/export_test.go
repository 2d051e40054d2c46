package client

import "github.com/switchyard/switchyard/broker/engine"

// LocalClient is what the in-process client (package broker/local)
// implements; the contract suites run it with the others.
type LocalClient interface {
	pubsubClient
	statuser
}

// NewLocal returns a broker/local client of b. It is set by
// local_test.go (package client_test): package client cannot import
// broker/local, which imports it.
var NewLocal func(b *engine.Broker) LocalClient

// newLocal is NewLocal, failing clearly if it was not set.
func newLocal(b *engine.Broker) LocalClient {
	if NewLocal == nil {
		panic("client.NewLocal not set: local_test.go missing")
	}
	return NewLocal(b)
}
