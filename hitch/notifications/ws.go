package notifications

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// serveWS pushes the caller's notifications over a WebSocket: one JSON
// text frame per notification ({"id", "event", "data"}), a ping every
// Heartbeat (a pong must come within WriteTimeout). Clients send nothing:
// a data message or a broken frame cuts the connection (no close
// handshake, which would wait for the rest of a message the client may
// declare as 2^63 bytes); ReadLimit bounds what is read of a frame.
func (s *Service) serveWS(w http.ResponseWriter, r *http.Request) {
	who, ok := caller(w, r)
	if !ok {
		return
	}
	if s.hub.count() >= s.cfg.MaxClients {
		s.busy(w)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		return // Accept answered the client
	}
	defer conn.CloseNow()
	c, replay, ok := s.hub.join(who.ID, lastEventID(r), s.cfg.MaxClients)
	if !ok {
		conn.Close(websocket.StatusTryAgainLater, "too many clients")
		return
	}
	conn.SetReadLimit(s.cfg.ReadLimit)
	// The reader answers pings and close frames until the client sends a
	// data message: clients have nothing to say, so that cuts the
	// connection.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		_, _, err := conn.Reader(ctx)
		cancel()
		if err == nil {
			// No close handshake: the library would wait for the rest of
			// the message, which a hostile client declares as 2^63 bytes.
			_ = conn.CloseNow()
		}
	}()
	defer func() { cancel(); <-readerDone }()
	defer s.hub.leave(c) // before waiting for the reader

	send := func(n Note) bool {
		b, err := json.Marshal(frame{ID: n.ID, Event: n.Event, Data: n.Data})
		if err != nil {
			return false
		}
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		defer cancel()
		return conn.Write(wctx, websocket.MessageText, b) == nil
	}
	for _, n := range replay {
		if !send(n) {
			return
		}
	}
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case n := <-c.ch:
			if !send(n) {
				return
			}
		case <-beat.C:
			pctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case <-c.kick:
			return // too slow; it reconnects with Last-Event-ID (CloseNow: it does not read a close frame either)
		case <-ctx.Done():
			return
		}
	}
}
