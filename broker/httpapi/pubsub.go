package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
)

// sseHeartbeat is how often an idle event stream gets a comment line, so
// that proxies and clients see the connection alive.
const sseHeartbeat = 15 * time.Second

func (s *Server) routePubSub() {
	s.handle("GET /v1/topics", func(w http.ResponseWriter, r *http.Request) {
		s.writeList(w, r, access.Topic, "topics", visible(r, access.Topic, s.b.Topics()))
	})
	s.handle("GET /v1/streams", func(w http.ResponseWriter, r *http.Request) {
		s.writeList(w, r, access.Stream, "streams", visible(r, access.Stream, s.b.Streams()))
	})
	s.handle("PUT /v1/topics/{name}", s.putTopic)
	s.handle("GET /v1/topics/{name}", s.getTopic)
	s.handle("DELETE /v1/topics/{name}", s.deleteTopic)
	s.handle("POST /v1/topics/{name}/messages", s.publishTopic)
	s.handle("GET /v1/topics/{name}/events", s.events)
	s.handle("PUT /v1/topics/{name}/queues/{queue}", s.bindQueue)
	s.handle("DELETE /v1/topics/{name}/queues/{queue}", s.unbindQueue)

	s.handle("PUT /v1/streams/{name}", s.putStream)
	s.handle("GET /v1/streams/{name}", s.getStream)
	s.handle("DELETE /v1/streams/{name}", s.deleteStream)
	s.handle("POST /v1/streams/{name}/messages", s.appendStream)
	s.handle("GET /v1/streams/{name}/messages", s.readStream)
	s.handle("GET /v1/streams/{name}/groups/{group}/fetch", s.fetch)
	s.handle("POST /v1/streams/{name}/groups/{group}/fetch", s.fetch)
	s.handle("POST /v1/streams/{name}/groups/{group}/commit", s.commit)
}

// putTopic declares a topic (?if_absent=1: as putQueue's).
func (s *Server) putTopic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	onlyNew, ok := ifAbsent(w, r)
	if !ok {
		return
	}
	var cfg broker.TopicConfig
	if err := decodeJSON(r, &cfg); err != nil {
		badRequest(w, "topic %q settings: %v", name, err)
		return
	}
	// Checked with if_absent too, as the native declare does: whether a
	// refused binding would have been made must not depend on the topic
	// existing.
	if err := principal(r).CheckBinding(cfg.Queues); err != nil {
		fail(w, err)
		return
	}
	created := true
	var err error
	if onlyNew {
		created, err = s.b.DeclareTopicIfAbsent(name, cfg)
	} else {
		err = s.b.DeclareTopic(name, cfg)
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.answerTopic(w, r, declared(onlyNew, created))
}

// bindQueue binds {queue} to topic {name}: 201 with a broker.BindAnswer
// when it was not bound, 200 when it already was. ?create=1 creates the
// queue with default settings if missing (which needs manage on it).
func (s *Server) bindQueue(w http.ResponseWriter, r *http.Request) {
	topic, queue := r.PathValue("name"), r.PathValue("queue")
	var opts broker.BindOptions
	switch c := r.URL.Query().Get("create"); c {
	case "", "0", "false":
	case "1", "true":
		opts.CreateQueue = true
	default:
		badRequest(w, "create=%q: want 1 or 0", c)
		return
	}
	// A bound queue receives every message of the topic: publish on it,
	// as a declare's queues need.
	p := principal(r)
	err := p.CheckBinding([]string{queue})
	if err == nil && opts.CreateQueue {
		err = p.Check(access.Manage, access.Queue, queue)
	}
	if err != nil {
		fail(w, err)
		return
	}
	changed, err := s.b.BindQueue(topic, queue, opts)
	if err != nil {
		fail(w, err)
		return
	}
	status := http.StatusOK
	if changed {
		status = http.StatusCreated
	}
	writeJSON(w, status, broker.BindAnswer{Topic: topic, Queue: queue, Bound: true, Changed: changed})
}

// unbindQueue unbinds {queue} from topic {name}: 200 with a
// broker.BindAnswer, whether or not it was bound.
func (s *Server) unbindQueue(w http.ResponseWriter, r *http.Request) {
	topic, queue := r.PathValue("name"), r.PathValue("queue")
	changed, err := s.b.UnbindQueue(topic, queue)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, broker.BindAnswer{Topic: topic, Queue: queue, Bound: false, Changed: changed})
}

func (s *Server) getTopic(w http.ResponseWriter, r *http.Request) {
	s.answerTopic(w, r, http.StatusOK)
}

func (s *Server) answerTopic(w http.ResponseWriter, r *http.Request, status int) {
	info, err := s.b.Topic(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, status, info)
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteTopic(r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) publishTopic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, err := s.b.Topic(name)
	if err != nil {
		fail(w, err)
		return
	}
	msg, opts, err := readMessage(r, "topic "+strconv.Quote(name), info.Config.MaxMessageSize)
	if err != nil {
		if errors.Is(err, broker.ErrTooLarge) {
			s.b.RecordTopicTooLarge(name)
		}
		failRead(w, err)
		return
	}
	res, err := s.b.PublishTopic(r.Context(), name, msg, opts)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// endRevoked ends an event stream whose user lost its permission (reason
// forbidden) or its credential (reason unauthorized) by a reload.
func endRevoked(w http.ResponseWriter, rc *http.ResponseController, err error) {
	data, _ := json.Marshal(broker.SubscriptionEnded{Error: err.Error(), Code: "subscription_ended", Reason: broker.ErrorCode(err)})
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
	rc.Flush()
}

// endEvent describes why a subscription ended (err nil: it was closed).
func endEvent(err error) broker.SubscriptionEnded {
	e := broker.SubscriptionEnded{Error: "subscription ended", Code: "subscription_ended"}
	if err == nil {
		return e
	}
	e.Error = err.Error()
	switch code := broker.ErrorCode(err); code {
	case broker.CodeLagged, broker.CodeNotFound, broker.CodeClosed:
		e.Reason = code
	}
	return e
}

// events streams a topic's new messages as server-sent events until the
// client goes away or the subscription ends (an "error" event says why).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sub, err := s.b.Subscribe(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": subscribed\n\n")
	if rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	// A reload of the broker's users may take the permission away, or
	// revoke the credential, while the stream is open: checked before
	// every event and heartbeat, it ends with an "error" event.
	who, name := principal(r), r.PathValue("name")
	for {
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			if err := who.Check(access.Consume, access.Topic, name); err != nil {
				endRevoked(w, rc, err)
				return
			}
			fmt.Fprint(w, ": ping\n\n")
		case m, ok := <-sub.C:
			if ok {
				if err := who.Check(access.Consume, access.Topic, name); err != nil {
					endRevoked(w, rc, err)
					return
				}
			}
			if !ok {
				data, _ := json.Marshal(endEvent(sub.Err()))
				fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
				rc.Flush()
				return
			}
			data, _ := json.Marshal(broker.TopicEvent{ID: strconv.FormatUint(m.ID, 10), Body: m.Body, Headers: m.Headers,
				Key: m.Key, MsgID: m.MsgID, Time: m.Time.UTC()})
			fmt.Fprintf(w, "id: %d\nevent: message\ndata: %s\n\n", m.ID, data)
			// Batch the flush when more messages are already waiting.
			if len(sub.C) > 0 {
				continue
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// putStream declares a stream (?if_absent=1: as putQueue's).
func (s *Server) putStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	onlyNew, ok := ifAbsent(w, r)
	if !ok {
		return
	}
	var cfg broker.StreamConfig
	if err := decodeJSON(r, &cfg); err != nil {
		badRequest(w, "stream %q settings: %v", name, err)
		return
	}
	created := true
	var err error
	if onlyNew {
		created, err = s.b.DeclareStreamIfAbsent(name, cfg)
	} else {
		err = s.b.DeclareStream(name, cfg)
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.answerStream(w, r, declared(onlyNew, created))
}

func (s *Server) getStream(w http.ResponseWriter, r *http.Request) {
	s.answerStream(w, r, http.StatusOK)
}

func (s *Server) answerStream(w http.ResponseWriter, r *http.Request, status int) {
	info, err := s.b.Stream(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, status, info)
}

func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteStream(r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) appendStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, err := s.b.Stream(name)
	if err != nil {
		fail(w, err)
		return
	}
	msg, _, err := readMessage(r, "stream "+strconv.Quote(name), info.Config.MaxMessageSize)
	if err != nil {
		if errors.Is(err, broker.ErrTooLarge) {
			s.b.RecordStreamTooLarge(name)
		}
		failRead(w, err)
		return
	}
	off, err := s.b.Append(r.Context(), name, msg)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, broker.OffsetAnswer{Offset: off})
}

func readOpts(w http.ResponseWriter, r *http.Request) (broker.ReadOptions, bool) {
	var opts broker.ReadOptions
	q := r.URL.Query()
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			badRequest(w, "query max=%q: want 1..10000", v)
			return opts, false
		}
		opts.Max = n
	}
	d, err := parseDur(q.Get("wait"))
	if err != nil || d > maxWait {
		badRequest(w, "query wait=%q: want a duration up to %s", q.Get("wait"), maxWait)
		return opts, false
	}
	opts.Wait = d
	return opts, true
}

func (s *Server) readStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	opts, ok := readOpts(w, r)
	if !ok {
		return
	}
	from, err := s.b.OffsetAt(name, r.URL.Query().Get("from"))
	if err != nil {
		fail(w, err)
		return
	}
	ms, err := s.b.Read(r.Context(), name, from, opts)
	if err != nil {
		fail(w, err)
		return
	}
	writePage(w, ms, from)
}

func writePage(w http.ResponseWriter, ms []broker.StreamMessage, from uint64) {
	next := from
	if len(ms) > 0 {
		next = ms[len(ms)-1].Offset + 1
	}
	if ms == nil {
		ms = []broker.StreamMessage{}
	}
	writeJSON(w, http.StatusOK, broker.ReadPage{Messages: ms, Next: next})
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	name, group := r.PathValue("name"), r.PathValue("group")
	opts, ok := readOpts(w, r)
	if !ok {
		return
	}
	info, err := s.b.Stream(name)
	if err != nil {
		fail(w, err)
		return
	}
	ms, err := s.b.Fetch(r.Context(), name, group, opts)
	if err != nil {
		fail(w, err)
		return
	}
	from := info.Groups[group]
	if from < info.FirstOffset {
		from = info.FirstOffset
	}
	writePage(w, ms, from)
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) {
	var req struct { // broker.OffsetAnswer, with the offset required
		Offset *uint64 `json:"offset"`
	}
	if err := decodeJSON(r, &req); err != nil {
		badRequest(w, "%v", err)
		return
	}
	if req.Offset == nil {
		badRequest(w, "offset: required (the next offset the group will read)")
		return
	}
	if err := s.b.Commit(r.PathValue("name"), r.PathValue("group"), *req.Offset); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, broker.OffsetAnswer{Offset: *req.Offset})
}
