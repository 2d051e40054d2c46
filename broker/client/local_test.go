package client_test

import (
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/local"
)

func init() {
	client.NewLocal = func(b *engine.Broker) client.LocalClient { return local.New(b) }
}
