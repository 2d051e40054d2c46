package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/switchyard/switchyard/broker"
)

// Health checks that the broker answers (GET /healthz).
func (h *HTTP) Health(ctx context.Context) error {
	return h.send(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// Queues lists the queues' names, sorted (GET /v1/queues).
func (h *HTTP) Queues(ctx context.Context) ([]string, error) {
	var ans struct {
		Queues []string `json:"queues"`
	}
	err := h.send(ctx, http.MethodGet, "/v1/queues", nil, nil, &ans)
	return ans.Queues, err
}

// Topics lists the topics' names, sorted (GET /v1/topics).
func (h *HTTP) Topics(ctx context.Context) ([]string, error) {
	var ans struct {
		Topics []string `json:"topics"`
	}
	err := h.send(ctx, http.MethodGet, "/v1/topics", nil, nil, &ans)
	return ans.Topics, err
}

// Streams lists the streams' names, sorted (GET /v1/streams).
func (h *HTTP) Streams(ctx context.Context) ([]string, error) {
	var ans struct {
		Streams []string `json:"streams"`
	}
	err := h.send(ctx, http.MethodGet, "/v1/streams", nil, nil, &ans)
	return ans.Streams, err
}

// QueueInfo returns a queue's settings and counts (GET /v1/queues/NAME).
func (h *HTTP) QueueInfo(ctx context.Context, name string) (broker.QueueInfo, error) {
	var info broker.QueueInfo
	err := h.send(ctx, http.MethodGet, "/v1/queues/"+url.PathEscape(name), nil, nil, &info)
	return info, err
}

// TopicInfo returns a topic's settings and counts (GET /v1/topics/NAME).
func (h *HTTP) TopicInfo(ctx context.Context, name string) (broker.TopicInfo, error) {
	var info broker.TopicInfo
	err := h.send(ctx, http.MethodGet, "/v1/topics/"+url.PathEscape(name), nil, nil, &info)
	return info, err
}

// StreamInfo returns a stream's settings, offsets and groups (GET
// /v1/streams/NAME).
func (h *HTTP) StreamInfo(ctx context.Context, name string) (broker.StreamInfo, error) {
	var info broker.StreamInfo
	err := h.send(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(name), nil, nil, &info)
	return info, err
}

// Redrive moves the messages of the queue's dead-letter queue back to
// the queues they came from (POST /v1/queues/NAME/redrive); it returns
// how many moved.
func (h *HTTP) Redrive(ctx context.Context, queue string) (int, error) {
	var ans struct {
		Moved int `json:"moved"`
	}
	err := h.do(ctx, "/v1/queues/"+url.PathEscape(queue)+"/redrive", nil, nil, &ans)
	return ans.Moved, err
}
