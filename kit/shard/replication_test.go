package shard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/shard"
	"github.com/switchyard/switchyard/kit/store"
)

// pgCluster is a PostgreSQL server the test owns: its own data directory
// and port, started as the postgres user.
type pgCluster struct {
	bin, dir string
	port     int
}

func (c *pgCluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", c.port)
}

func asPostgres(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (c *pgCluster) start(t *testing.T) {
	asPostgres(t, filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-l", c.dir+".log", "-w", "-t", "30", "start")
}

func (c *pgCluster) crash(t *testing.T) {
	asPostgres(t, filepath.Join(c.bin, "pg_ctl"), "-D", c.dir, "-m", "immediate", "-w", "stop")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// replicaPair starts a primary and a synchronous streaming standby. It
// needs root (to run PostgreSQL as the postgres user) and the server
// binaries; without them the test is skipped, saying why.
func replicaPair(t *testing.T) (primary, standby *pgCluster) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start PostgreSQL servers as the postgres user (CI runs as root)")
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) not installed")
	}
	if _, err := user.Lookup("postgres"); err != nil {
		t.Skip("no postgres user")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	base, err := os.MkdirTemp("", "sy-pgrepl-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o777)
	primary = &pgCluster{bin: bin, dir: filepath.Join(base, "primary"), port: freePort(t)}
	standby = &pgCluster{bin: bin, dir: filepath.Join(base, "standby"), port: freePort(t)}
	t.Cleanup(func() {
		for _, c := range []*pgCluster{primary, standby} {
			exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", c.dir, "-m", "immediate", "stop").Run()
		}
		if t.Failed() {
			for _, c := range []*pgCluster{primary, standby} {
				if b, err := os.ReadFile(c.dir + ".log"); err == nil {
					t.Logf("%s log:\n%s", filepath.Base(c.dir), b)
				}
			}
		}
		os.RemoveAll(base)
	})
	asPostgres(t, filepath.Join(bin, "initdb"), "-D", primary.dir, "-A", "trust", "-U", "postgres", "--no-sync")
	conf := fmt.Sprintf(`
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
synchronous_commit = on
synchronous_standby_names = '*'
`, primary.port, base)
	appendFile(t, filepath.Join(primary.dir, "postgresql.conf"), conf)
	appendFile(t, filepath.Join(primary.dir, "pg_hba.conf"), "host replication all 127.0.0.1/32 trust\n")
	primary.start(t)
	asPostgres(t, filepath.Join(bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres", "-D", standby.dir, "-R", "-X", "stream")
	appendFile(t, filepath.Join(standby.dir, "postgresql.conf"), fmt.Sprintf("port = %d\n", standby.port))
	standby.start(t)
	return primary, standby
}

func appendFile(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplicasAndFailover runs a real primary and synchronous standby:
// reads after a write see it (read-your-writes) on the replica once it has
// replayed it, or on the primary before; when the primary crashes the
// standby is promoted and writes go on with nothing committed lost; the
// old primary, restarted, refuses fenced writes and is made read-only.
func TestReplicasAndFailover(t *testing.T) {
	primary, standby := replicaPair(t)
	ctx := context.Background()
	var mu sync.Mutex
	var events []shard.Event
	f, err := shard.NewFailover(ctx, shard.FailoverConfig{
		Nodes:    []shard.Node{{Name: "pg-a", DSN: primary.dsn()}, {Name: "pg-b", DSN: standby.dsn()}},
		LeaseTTL: time.Second,
		OnEvent: func(e shard.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			t.Logf("failover: %s %s: %s", e.Kind, e.Node, e.Message)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go f.Run(runCtx)

	if err := f.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE rides (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pdb, _ := f.Primary()
	rep := &shard.Replicated{Primary: pdb, Replicas: []*store.DB{f.Node("pg-b")}}
	sawReplica := false
	for i := range 50 {
		id := fmt.Sprintf("r%d", i)
		pos, err := rep.Write(ctx, func(tx *store.Tx) error {
			if err := shard.FencedWrite(ctx, tx.DB(), "pg-a", func(*store.Tx) error { return nil }); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO rides (id, n) VALUES (?, ?)", id, i)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if pos == "" {
			t.Fatal("no write position from PostgreSQL")
		}
		err = rep.ReadAfter(ctx, pos, func(db *store.DB) error {
			var n int
			if err := db.QueryRow(ctx, "SELECT n FROM rides WHERE id = ?", id).Scan(&n); err != nil {
				return fmt.Errorf("read-your-writes: %s not visible: %w", id, err)
			}
			var rec bool
			db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
			sawReplica = sawReplica || rec
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !sawReplica {
		t.Fatal("50 reads after synchronous commits never used the replica")
	}

	// The primary dies. Within a few lease periods writes go to pg-b,
	// with every committed row there.
	primary.crash(t)
	waitFor(t, "promotion of pg-b", 60*time.Second, func() bool {
		_, name := f.Primary()
		return name == "pg-b"
	})
	if err := f.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO rides (id, n) VALUES (?, ?)", "after", 99)
		return err
	}); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	var n int
	newp, _ := f.Primary()
	newp.QueryRow(ctx, "SELECT COUNT(*) FROM rides").Scan(&n)
	if n != 51 {
		t.Fatalf("%d rides on the new primary, want 51 (50 committed before the crash + 1)", n)
	}

	// The old primary comes back as a primary: fenced writes to it fail,
	// and the failover makes it read-only.
	primary.start(t)
	old := f.Node("pg-a")
	waitFor(t, "old primary back", 30*time.Second, func() bool { return old.PingContext(ctx) == nil })
	err = shard.FencedWrite(ctx, old, "pg-a", func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO rides (id, n) VALUES (?, ?)", "split-brain", 0)
		return err
	})
	if !errors.Is(err, shard.ErrFenced) {
		t.Fatalf("fenced write on the old primary: %v, want ErrFenced", err)
	}
	waitFor(t, "old primary made read-only", 30*time.Second, func() bool {
		var ro string
		old.QueryRow(ctx, "SHOW default_transaction_read_only").Scan(&ro)
		return ro == "on"
	})
	if _, err := old.Exec(ctx, "INSERT INTO rides (id, n) VALUES ('raw', 0)"); err == nil {
		t.Fatal("an unfenced write to the fenced old primary succeeded")
	}
}
