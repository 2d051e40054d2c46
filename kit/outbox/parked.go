package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard/switchyard/kit/store"
)

// ParkedMessage is a message the relay parked (see the package doc's
// Parking).
type ParkedMessage struct {
	ID       int64 // row id, kept from sy_outbox
	MsgID    string
	Dest     string
	Key      string
	Size     int    // body bytes
	Error    string // the broker's answer
	Created  time.Time
	ParkedAt time.Time
}

// Parked lists parked messages, oldest row first, at most limit (0: all).
func Parked(ctx context.Context, db *store.DB, limit int) ([]ParkedMessage, error) {
	if err := Prepare(ctx, db); err != nil {
		return nil, err
	}
	q := "SELECT id, msg_id, dest, msg_key, LENGTH(body), error, created_ms, parked_ms FROM sy_outbox_parked ORDER BY id"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("outbox: listing parked messages: %w", err)
	}
	defer rows.Close()
	var out []ParkedMessage
	for rows.Next() {
		var (
			m                 ParkedMessage
			created, parkedAt int64
		)
		if err := rows.Scan(&m.ID, &m.MsgID, &m.Dest, &m.Key, &m.Size, &m.Error, &created, &parkedAt); err != nil {
			return nil, fmt.Errorf("outbox: listing parked messages: %w", err)
		}
		m.Created, m.ParkedAt = time.UnixMilli(created), time.UnixMilli(parkedAt)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: listing parked messages: %w", err)
	}
	return out, nil
}

// Redrive moves the parked messages with the given row ids (none: all)
// back to sy_outbox, at its end (a new row id; the message keeps its
// Msg-Id, key and per-key number), and wakes the relay. Do it after the
// cause is gone (the destination's max_message_size raised), or the
// relay parks them again. It returns how many it moved.
func Redrive(ctx context.Context, db *store.DB, ids ...int64) (int, error) {
	return moveParked(ctx, db, "redriving", true, ids)
}

// Discard deletes the parked messages with the given row ids (none: all)
// for good. It returns how many it deleted.
func Discard(ctx context.Context, db *store.DB, ids ...int64) (int, error) {
	return moveParked(ctx, db, "discarding", false, ids)
}

func moveParked(ctx context.Context, db *store.DB, what string, back bool, ids []int64) (int, error) {
	if err := Prepare(ctx, db); err != nil {
		return 0, err
	}
	where, args := "", []any(nil)
	if len(ids) > 0 {
		where = " WHERE id IN (" + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + ")"
		for _, id := range ids {
			args = append(args, id)
		}
	}
	var n int64
	err := db.InTx(ctx, func(tx *store.Tx) error {
		if back {
			// New row ids come from sy_outbox's own sequence, in the
			// parked rows' order.
			if _, err := tx.Exec(ctx, `INSERT INTO sy_outbox (msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms)
				SELECT msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms FROM sy_outbox_parked`+where+" ORDER BY id", args...); err != nil {
				return err
			}
			tx.NotifyAfterCommit(Channel)
		}
		res, err := tx.Exec(ctx, "DELETE FROM sy_outbox_parked"+where, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: %s parked messages: %w", what, err)
	}
	return int(n), nil
}
