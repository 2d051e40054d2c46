package rides

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// A rider's cancel and matching's match.found race on the same rides,
// from two service instances on one database (two replicas): the
// optimistic concurrency of the streams lets exactly one decision see
// each state, so every stream is [requested, cancelled] (the match came
// late and was released) or [requested, matched, cancelled], never a
// cancelled ride matched or a ride cancelled twice.
func TestCancelRacesMatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, err := New(ctx, db, nil, Config{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(ctx, db, nil, Config{})
		if err != nil {
			t.Fatal(err)
		}
		const n = 30
		ids := make([]string, n)
		for i := range ids {
			res, err := a.Request(ctx, RequestInput{RiderID: fmt.Sprintf("r%d", i), From: hitch.Point{Lat: 1, Lon: 1}, To: hitch.Point{Lat: 1.1, Lon: 1}})
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = res.RideID
		}
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := a.Cancel(ctx, id, hitch.Caller{ID: fmt.Sprintf("r%d", i), Role: hitch.RoleRider}); err != nil {
					t.Errorf("cancel %s: %v", id, err)
				}
			}()
			go func() {
				defer wg.Done()
				body := fmt.Sprintf(`{"ride_id": %q, "rider_id": "r%d", "driver_id": "d1", "at": %q}`, id, i, time.Now().Format(time.RFC3339))
				if _, err := b.apply(ctx, "match-"+id, hitch.KindMatchFound, []byte(body)); err != nil {
					t.Errorf("match %s: %v", id, err)
				}
			}()
		}
		wg.Wait()
		released := 0
		for _, id := range ids {
			evs, err := a.Events(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, e := range evs {
				kinds = append(kinds, e.Type)
			}
			switch fmt.Sprint(kinds) {
			case fmt.Sprint([]string{hitch.KindRideRequested, hitch.KindRideCancelled}):
				released++
			case fmt.Sprint([]string{hitch.KindRideRequested, hitch.KindRideMatched, hitch.KindRideCancelled}):
			default:
				t.Fatalf("ride %s: stream %v", id, kinds)
			}
			r, _ := a.Get(ctx, id)
			f, _ := a.Fold(ctx, id)
			if r.Status != Cancelled || fmt.Sprint(r) != fmt.Sprint(f) {
				t.Fatalf("ride %s: table %+v, fold %+v", id, r, f)
			}
		}
		// Every late match released its seat: one outbox message each.
		var rel int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_outbox WHERE msg_id LIKE 'release-%'").Scan(&rel); err != nil {
			t.Fatal(err)
		}
		if rel != released {
			t.Fatalf("%d releases in the outbox, %d rides cancelled before their match", rel, released)
		}
		t.Logf("%d of %d matches came late; conflicts retried: %d + %d", released, n, a.Stats().Conflicts, b.Stats().Conflicts)

		// The table is a projection of the streams: lose and corrupt it,
		// refold it, and it is back.
		if _, err := db.Exec(ctx, "DELETE FROM rides WHERE id = ?", ids[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, "UPDATE rides SET status = 'paid', fare_cents = 1"); err != nil {
			t.Fatal(err)
		}
		if got, err := a.RebuildTable(ctx); err != nil || got != n {
			t.Fatalf("RebuildTable: %d rides, %v; want %d", got, err, n)
		}
		for _, id := range ids {
			r, err := a.Get(ctx, id)
			f, _ := a.Fold(ctx, id)
			if err != nil || fmt.Sprint(r) != fmt.Sprint(f) {
				t.Fatalf("after RebuildTable, ride %s: table %+v (%v), fold %+v", id, r, err, f)
			}
		}
	})
}
