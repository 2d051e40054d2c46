package registry

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/switchyard/switchyard/kit/discovery"
)

// The file format: registry.db, a SQLite database in WAL mode with
// synchronous=NORMAL (a process crash loses nothing committed; an OS
// crash may lose the last changes, which only shifts TTLs).
//
//	instances(service TEXT, id TEXT, registration TEXT -- discovery.Registration as JSON
//	          state TEXT, expires INTEGER -- unix nanoseconds, idx INTEGER,
//	          lease BLOB -- SHA-256 of the instance's lease; NULL for one stored before leases
//	          PRIMARY KEY(service, id))
//	meta(key TEXT PRIMARY KEY, value INTEGER)
//	  'index' -- the registry index of the last change
//	  'clock' -- unix nanoseconds of the last write (or the idle clock tick)
//
// On open, each instance's expiry is moved forward by the time the
// registry was down (now - clock), so it keeps the TTL it had left, and
// capped at now + its TTL (a clock that went back while the registry was
// down gives no instance more than its TTL).
const schema = `
CREATE TABLE IF NOT EXISTS instances (
	service TEXT NOT NULL,
	id TEXT NOT NULL,
	registration TEXT NOT NULL,
	state TEXT NOT NULL,
	expires INTEGER NOT NULL,
	idx INTEGER NOT NULL,
	lease BLOB,
	PRIMARY KEY (service, id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`

// FileName is the registry's database file inside its data directory.
const FileName = "registry.db"

type store struct {
	db *sql.DB
}

// openStore opens (creating) the database in dir and returns the live
// instances, their expiries moved forward by the downtime, and the index.
func openStore(dir string, now time.Time) (*store, []loaded, uint64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, 0, fmt.Errorf("creating data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; the registry serialises access anyway
	st := &store{db: db}
	insts, index, err := st.load(now)
	if err != nil {
		db.Close()
		return nil, nil, 0, fmt.Errorf("loading %s: %w", path, err)
	}
	return st, insts, index, nil
}

// loaded is an instance read from the file with its lease hash.
type loaded struct {
	in    *discovery.Instance
	lease leaseHash
	owned bool // a lease was stored
}

func (s *store) load(now time.Time) ([]loaded, uint64, error) {
	if _, err := s.db.Exec(schema); err != nil {
		return nil, 0, err
	}
	// A file written before leases lacks the column: add it (its
	// instances stay unowned until they register again).
	if _, err := s.db.Exec(`SELECT lease FROM instances LIMIT 0`); err != nil {
		if _, err := s.db.Exec(`ALTER TABLE instances ADD COLUMN lease BLOB`); err != nil {
			return nil, 0, fmt.Errorf("adding the lease column: %w", err)
		}
	}
	var index, clock int64
	if err := s.db.QueryRow(`SELECT COALESCE((SELECT value FROM meta WHERE key='index'),0), COALESCE((SELECT value FROM meta WHERE key='clock'),0)`).Scan(&index, &clock); err != nil {
		return nil, 0, err
	}
	down := time.Duration(0)
	if clock > 0 && now.UnixNano() > clock {
		down = time.Duration(now.UnixNano() - clock)
	}
	rows, err := s.db.Query(`SELECT service, id, registration, state, expires, lease FROM instances`)
	if err != nil {
		return nil, 0, err
	}
	var live []loaded
	var dead [][2]string
	for rows.Next() {
		var service, id, body, state string
		var expires int64
		var lease []byte
		if err := rows.Scan(&service, &id, &body, &state, &expires, &lease); err != nil {
			rows.Close()
			return nil, 0, err
		}
		in := &discovery.Instance{State: discovery.State(state), Expires: time.Unix(0, expires).Add(down)}
		err := json.Unmarshal([]byte(body), &in.Registration)
		if err == nil {
			err = in.Registration.Validate()
		}
		// No instance has more than its TTL left: expiries stored while
		// the clock ran ahead (corrected while the registry was down)
		// would otherwise keep dead instances for as long as it was ahead.
		if ttl := in.TTL.Std(); err == nil && ttl > 0 && in.Expires.After(now.Add(ttl)) {
			in.Expires = now.Add(ttl)
		}
		if err != nil || in.Service != service || in.ID != id ||
			(in.State != discovery.StateUp && in.State != discovery.StateDraining) || !now.Before(in.Expires) {
			dead = append(dead, [2]string{service, id}) // expired while down, or not ours
			continue
		}
		li := loaded{in: in}
		if len(lease) == len(li.lease) {
			copy(li.lease[:], lease)
			li.owned = true
		}
		live = append(live, li)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, 0, err
	}
	rows.Close()
	tx, err := s.db.Begin()
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	for _, d := range dead {
		if _, err := tx.Exec(`DELETE FROM instances WHERE service=? AND id=?`, d[0], d[1]); err != nil {
			return nil, 0, err
		}
	}
	if down > 0 {
		if _, err := tx.Exec(`UPDATE instances SET expires = expires + ?`, int64(down)); err != nil {
			return nil, 0, err
		}
	}
	if len(dead) > 0 {
		index++ // the removals are a change
	}
	if err := setMeta(tx, index, now); err != nil {
		return nil, 0, err
	}
	return live, uint64(index), tx.Commit()
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func setMeta(e execer, index int64, now time.Time) error {
	if _, err := e.Exec(`INSERT INTO meta(key, value) VALUES('index', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value`, index); err != nil {
		return err
	}
	_, err := e.Exec(`INSERT INTO meta(key, value) VALUES('clock', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value`, now.UnixNano())
	return err
}

// put stores in with its lease hash (nil: unowned).
func (s *store) put(in *discovery.Instance, lease []byte, index uint64, now time.Time) error {
	body, err := json.Marshal(in.Registration)
	if err != nil {
		return err
	}
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("storing instance: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO instances(service, id, registration, state, expires, idx, lease) VALUES(?,?,?,?,?,?,?)
		ON CONFLICT(service, id) DO UPDATE SET registration=excluded.registration, state=excluded.state, expires=excluded.expires, idx=excluded.idx, lease=excluded.lease`,
		in.Service, in.ID, string(body), string(in.State), in.Expires.UnixNano(), int64(index), lease); err != nil {
		return fmt.Errorf("storing instance: %w", err)
	}
	if err := setMeta(tx, int64(index), now); err != nil {
		return fmt.Errorf("storing instance: %w", err)
	}
	return tx.Commit()
}

func (s *store) renew(service, id string, expires, now time.Time) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("storing heartbeat: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE instances SET expires=? WHERE service=? AND id=?`, expires.UnixNano(), service, id); err != nil {
		return fmt.Errorf("storing heartbeat: %w", err)
	}
	if _, err := tx.Exec(`INSERT INTO meta(key, value) VALUES('clock', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value`, now.UnixNano()); err != nil {
		return fmt.Errorf("storing heartbeat: %w", err)
	}
	return tx.Commit()
}

func (s *store) remove(service string, ids []string, index uint64, now time.Time) error {
	tx, err := s.db.Begin()
	if err != nil {
		return fmt.Errorf("removing instances: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.Exec(`DELETE FROM instances WHERE service=? AND id=?`, service, id); err != nil {
			return fmt.Errorf("removing instances: %w", err)
		}
	}
	if err := setMeta(tx, int64(index), now); err != nil {
		return fmt.Errorf("removing instances: %w", err)
	}
	return tx.Commit()
}

func (s *store) setClock(now time.Time) error {
	_, err := s.db.Exec(`INSERT INTO meta(key, value) VALUES('clock', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value`, now.UnixNano())
	return err
}

func (s *store) close() error { return s.db.Close() }
