package projection_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

const (
	childDSN    = "SY_PROJECTION_CRASH_DSN"
	childTarget = "SY_PROJECTION_CRASH_TARGET"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(childDSN); dsn != "" {
		os.Exit(projectorChild(dsn))
	}
	os.Exit(m.Run())
}

// projectorChild projects until the checkpoint reaches the target, then
// exits 0; any error exits 1 (the parent fails on it).
func projectorChild(dsn string) int {
	target, _ := strconv.ParseInt(os.Getenv(childTarget), 10, 64)
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p := balances
	p.Batch = 5
	p.PollInterval = 20 * time.Millisecond
	pr, err := projection.New(ctx, db, p, projection.EventStore(es))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready") // the parent arms its kill timer now
	for {
		n, err := pr.Step(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if n > 0 {
			continue
		}
		cp, err := pr.Checkpoint(ctx, "eventstore")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Done when every event is applied and all target events exist
		// (positions have gaps on PostgreSQL: count, do not compare).
		left, err1 := es.CountAfter(ctx, cp)
		all, err2 := es.CountAfter(ctx, 0)
		if err := errors.Join(err1, err2); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if left == 0 && all >= target {
			return 0
		}
		time.Sleep(10 * time.Millisecond) // poll for the parent's next appends
	}
}

// A projector SIGKILLed at random moments while the events it projects
// are still being appended: after restarts, the read model equals the
// one computed from the events — nothing applied twice (the handler also
// refuses an out-of-order or repeated version), nothing missed.
func TestCrashProjector(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: not in -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name string
		dsn  func(testing.TB) string
	}{{"sqlite", storetest.SQLitePath}, {"postgres", storetest.PostgresDSN}} {
		t.Run(d.name, func(t *testing.T) {
			dsn := d.dsn(t)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			db, err := store.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			es, err := eventstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			const total = 200
			want := map[string][3]int64{}
			r := rand.New(rand.NewPCG(11, 12))
			deposit(t, ctx, es, r, want, 8, total/2)
			// The other half is appended while the projector is killed.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(13, 14))
				for i := 0; i < total/2; i++ {
					acct := fmt.Sprintf("acct-%d", r.IntN(8))
					amt := int64(1 + r.IntN(100))
					w := want[acct]
					e, _ := eventstore.NewEvent("Deposited", map[string]int64{"amount": amt})
					e.Metadata = map[string]string{"v": fmt.Sprint(w[2] + 1)}
					if _, err := es.Append(ctx, acct, eventstore.Expected(w[2]), e); err != nil {
						t.Error(err)
						return
					}
					want[acct] = [3]int64{w[0] + amt, w[1] + 1, w[2] + 1}
					time.Sleep(22 * time.Millisecond) // spread the appends over the kill window
				}
			}()
			kr := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			killDeadline := time.Now().Add(3 * time.Second)
			kills, finished := 0, false
			midKills, lastCP := 0, int64(0)
			for !finished {
				var stderr bytes.Buffer
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), childDSN+"="+dsn, childTarget+"="+strconv.Itoa(total))
				cmd.Stderr = &stderr
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				ready := make(chan struct{})
				go func() {
					sc := bufio.NewScanner(stdout)
					for sc.Scan() {
						if sc.Text() == "ready" {
							close(ready)
						}
					}
				}()
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				var kill <-chan time.Time
				if time.Now().Before(killDeadline) {
					// Kill at a random moment after the child has opened
					// the database and started projecting.
					select {
					case <-ready:
					case err := <-exited:
						exited <- err // handled below
					case <-ctx.Done():
						t.Fatal("projector never got ready")
					}
					kill = time.After(time.Duration(kr.IntN(250)) * time.Millisecond)
				}
				select {
				case err := <-exited:
					if err != nil {
						t.Fatalf("projector failed on its own: %v\n%s", err, stderr.String())
					}
					finished = true
				case <-kill:
					cmd.Process.Signal(syscall.SIGKILL)
					<-exited
					kills++
					var cp int64
					db.QueryRow(ctx, "SELECT position FROM sy_projection_checkpoints WHERE projection = 'balances'").Scan(&cp)
					if left, _ := es.CountAfter(ctx, cp); cp > lastCP && left > 0 {
						midKills++ // killed while it was making progress
					}
					lastCP = cp
				case <-ctx.Done():
					cmd.Process.Kill()
					t.Fatal("projector did not finish in time")
				}
			}
			wg.Wait()
			// The child may finish before the last appends: one more pass.
			pr, err := projection.New(ctx, db, balances, projection.EventStore(es))
			if err != nil {
				t.Fatal(err)
			}
			if err := pr.CatchUp(ctx); err != nil {
				t.Fatal(err)
			}
			got := readModel(t, ctx, db, "balances")
			if !equal(got, want) {
				t.Fatalf("after %d kills the read model differs\n got %v\nwant %v", kills, got, want)
			}
			if midKills == 0 {
				t.Fatalf("none of the %d kills hit the projector while it was making progress: the test proved nothing", kills)
			}
			t.Logf("%d SIGKILLs (%d while projecting), %d events, read model exact", kills, midKills, total)
		})
	}
}
