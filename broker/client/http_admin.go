package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/broker"
)

// ErrNotBroker is returned when the server at Base answers, but not as a
// switchyard broker's HTTP API would (another service on that port: a
// gateway, its admin API, a backend).
var ErrNotBroker = errors.New("not a switchyard broker")

// notBroker reports that h.Base answered method path with data.
func (h *HTTP) notBroker(method, path, expected string, data any) error {
	return fmt.Errorf("%s is %w: %s %s answered %s, expected %s", h.Base, ErrNotBroker, method, path, shorten(data), expected)
}

// shorten quotes an answer for an error message, cut to 120 bytes.
func shorten(data any) string {
	var s string
	switch d := data.(type) {
	case string:
		s = d
	case []byte:
		s = string(d)
	case error:
		s = d.Error()
	default:
		s = fmt.Sprint(d)
	}
	s = strings.TrimSpace(s)
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return strconv.Quote(s)
}

// Health checks that the broker answers (GET /healthz with
// {"status":"ok"}); another service's answer is ErrNotBroker.
func (h *HTTP) Health(ctx context.Context) error {
	var raw []byte
	if err := h.send(ctx, http.MethodGet, "/healthz", nil, nil, &raw); err != nil {
		if errors.Is(err, ErrDisconnected) || ctx.Err() != nil {
			return err
		}
		return h.notBroker(http.MethodGet, "/healthz", `{"status":"ok"}`, err)
	}
	var ans broker.HealthAnswer
	if json.Unmarshal(raw, &ans) != nil || ans.Status != "ok" {
		return h.notBroker(http.MethodGet, "/healthz", `{"status":"ok"}`, raw)
	}
	return nil
}

// list gets the names under key from GET path. A broker always serves
// these paths with that key: anything else is ErrNotBroker.
func (h *HTTP) list(ctx context.Context, path, key string) ([]string, error) {
	var names []string
	// Follow the Link rel="next" of each page (the broker pages listings
	// of more than 1000 names), on this broker only.
	for target, pages := path, 0; target != ""; pages++ {
		if pages > 100000 {
			return nil, fmt.Errorf("GET %s: more than %d pages: the broker's next links go round in circles", path, pages)
		}
		var pg pageAnswer
		if err := h.send(ctx, http.MethodGet, target, nil, nil, &pg); err != nil {
			if errors.Is(err, broker.ErrNotFound) && pages == 0 {
				return nil, h.notBroker(http.MethodGet, path, `{"`+key+`":[...]}`, err)
			}
			return nil, err
		}
		var ans map[string]json.RawMessage
		var page []string
		if json.Unmarshal(pg.body, &ans) != nil || ans[key] == nil || json.Unmarshal(ans[key], &page) != nil {
			return nil, h.notBroker(http.MethodGet, path, `{"`+key+`":[...]}`, pg.body)
		}
		names = append(names, page...)
		if pg.next != "" && !strings.HasPrefix(pg.next, path+"?") {
			return nil, fmt.Errorf("GET %s: the next link %q leaves the listing: expected %s?...", path, pg.next, path)
		}
		target = pg.next
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// Queues lists the queues' names, sorted (GET /v1/queues).
func (h *HTTP) Queues(ctx context.Context) ([]string, error) {
	return h.list(ctx, "/v1/queues", "queues")
}

// Topics lists the topics' names, sorted (GET /v1/topics).
func (h *HTTP) Topics(ctx context.Context) ([]string, error) {
	return h.list(ctx, "/v1/topics", "topics")
}

// Streams lists the streams' names, sorted (GET /v1/streams).
func (h *HTTP) Streams(ctx context.Context) ([]string, error) {
	return h.list(ctx, "/v1/streams", "streams")
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
// how many moved. Messages whose x-original-queue names no queue stay:
// the error is then a *broker.RedriveKeptError naming the dead-letter
// queue.
func (h *HTTP) Redrive(ctx context.Context, queue string) (int, error) {
	var ans broker.RedriveAnswer
	err := h.do(ctx, "/v1/queues/"+url.PathEscape(queue)+"/redrive", nil, nil, &ans)
	if err == nil && ans.Kept > 0 {
		dlq := ans.DLQ
		if dlq == "" {
			dlq = queue + "'s dead-letter queue"
		}
		err = &broker.RedriveKeptError{DLQ: dlq, Kept: ans.Kept, First: ans.First}
	}
	return ans.Moved, err
}
