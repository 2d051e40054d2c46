package rides

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
)

// errSkip: the message does not apply (acked, counted as ignored).
var errSkip = errors.New("not applicable")

// handleMessage applies one message of the service's queues through the
// inbox: the ride's change and the record of the message commit
// together, so a redelivery changes nothing. Unknown kinds, unknown
// rides and unreadable payloads are acked (there is nothing a retry
// could do) and logged.
func (s *Service) handleMessage(ctx context.Context, d *message.Delivery) error {
	kind := d.Headers["kind"]
	id := d.ID
	if id == "" {
		sum := sha256.Sum256(append([]byte(kind+"\x00"), d.Body...))
		id = "body:" + hex.EncodeToString(sum[:16])
	}
	applied, err := s.apply(ctx, id, kind, d.Body)
	switch {
	case errors.Is(err, errSkip), errors.Is(err, ErrNotFound):
		s.count(func(st *Stats) { st.Ignored++ })
		s.log.InfoContext(ctx, "rides: message ignored", "kind", kind, "id", id, "why", err)
		return nil
	case errors.Is(err, errMalformed):
		s.count(func(st *Stats) { st.Malformed++ })
		s.log.ErrorContext(ctx, "rides: malformed message acked", "kind", kind, "id", id, "err", err)
		return nil
	case err != nil:
		return err // nacked: redelivered
	}
	if applied {
		s.count(func(st *Stats) { st.Applied++ })
	}
	return nil
}

// cleanID reports whether an id from a message can be stored as text
// on both databases (PostgreSQL refuses NUL bytes).
func cleanID(s string) bool {
	return len(s) <= 256 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

var errMalformed = errors.New("malformed payload")

// apply applies the message with id, kind and body; it reports whether
// it changed anything (false for a message seen before).
func (s *Service) apply(ctx context.Context, id, kind string, body []byte) (bool, error) {
	var msg hitch.RideRef
	var match hitch.MatchFound
	switch kind {
	case hitch.KindMatchFound:
		if err := hitch.Decode(kind, body, &match); err != nil {
			return false, fmt.Errorf("%w: %v", errMalformed, err)
		}
		msg = match.RideRef
	case hitch.KindMatchNone, hitch.KindPaymentCharged, hitch.KindPaymentFailed:
		if err := hitch.Decode(kind, body, &msg); err != nil {
			return false, fmt.Errorf("%w: %v", errMalformed, err)
		}
	default:
		return false, fmt.Errorf("%w: unknown kind %q", errSkip, kind)
	}
	if msg.RideID == "" {
		return false, fmt.Errorf("%w: %s without ride_id", errMalformed, kind)
	}
	if kind == hitch.KindMatchFound && match.DriverID == "" {
		return false, fmt.Errorf("%w: %s without driver_id", errMalformed, kind)
	}
	if !cleanID(msg.RideID) || !cleanID(match.DriverID) || !cleanID(id) {
		return false, fmt.Errorf("%w: %s: ids must be UTF-8 text of at most 256 bytes without NUL", errMalformed, kind)
	}
	applied := false
	run := func(ctx context.Context, fn func(tx *store.Tx) error) error {
		ok, err := s.inbox.Process(ctx, id, fn)
		applied = ok
		return err
	}
	_, err := s.mutate(ctx, msg.RideID, run, func(r Ride) (change, error) {
		var ch change
		if r.ID == "" {
			return ch, ErrNotFound
		}
		at := now()
		switch kind {
		case hitch.KindMatchFound:
			switch {
			case r.Status == Searching:
				return ch, ch.record(hitch.KindRideMatched, hitch.RideMatched{
					RideRef: hitch.RideRef{RideID: r.ID, RiderID: r.RiderID, DriverID: match.DriverID, At: at}, From: r.From, To: r.To})
			case r.DriverID == match.DriverID:
				return ch, fmt.Errorf("%w: ride %s already has driver %s", errSkip, r.ID, r.DriverID)
			default:
				// The ride no longer wants this driver (cancelled meanwhile,
				// or taken otherwise): release the seat matching reserved.
				by := r.CancelledBy
				if by == "" {
					by = "system"
				}
				m, err := hitch.Event(hitch.KindRideCancelled, "release-"+id, r.ID, hitch.RideCancelled{
					RideRef: hitch.RideRef{RideID: r.ID, RiderID: r.RiderID, DriverID: match.DriverID, At: at}, By: by})
				ch.publish = []broker.Message{m}
				return ch, err
			}
		case hitch.KindMatchNone:
			if r.Status != Searching {
				return ch, fmt.Errorf("%w: ride %s is %s", errSkip, r.ID, r.Status)
			}
			return ch, ch.record(hitch.KindRideNoDriver, hitch.RideRef{RideID: r.ID, RiderID: r.RiderID, At: at})
		case hitch.KindPaymentCharged:
			if r.Status != Finished {
				return ch, fmt.Errorf("%w: ride %s is %s", errSkip, r.ID, r.Status)
			}
			return ch, ch.record(hitch.KindRidePaid, ref(r, at))
		default: // payment.failed
			if r.Status != Finished && r.Status != Paid {
				return ch, fmt.Errorf("%w: ride %s is %s", errSkip, r.ID, r.Status)
			}
			return ch, ch.record(hitch.KindRidePayFailed, ref(r, at))
		}
	})
	return applied, err
}
