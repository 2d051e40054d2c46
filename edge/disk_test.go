package edge

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
)

// diskFront is a cache with a disk tier in dir in front of o.
func diskFront(t *testing.T, o *origin, dir string, mem, disk int64) *front {
	t.Helper()
	s, err := OpenStore(StoreOptions{Memory: mem, Disk: &Disk{Path: dir, Size: 0}})
	if err == nil {
		t.Fatal("OpenStore accepted a disk tier of size 0")
	}
	s, err = OpenStore(StoreOptions{Memory: mem, Disk: &Disk{Path: dir, Size: sizeOf(disk)}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(o.srv.URL)
	c, err := New(s, Policy{Key: []string{"path", "query"}}, Options{}) // not the host: each test server has its own port
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Middleware()(httputil.NewSingleHostReverseProxy(u)))
	t.Cleanup(func() { srv.Close(); c.Close(); s.Close() })
	return &front{c: c, srv: srv}
}

// stop closes the front and its store, so everything queued is on disk.
func (f *front) stop() {
	f.srv.Close()
	f.c.Close()
	f.c.Store().Close()
}

// counted answers "<path> #<n>" with max-age=600, n counting the origin's answers.
func counted(o **origin) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s #%d %s", r.URL.Path, (*o).n.Load(), strings.Repeat("x", 900))
	}
}

func files(t *testing.T, dir string) (names []string, bytes int64) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		info, _ := de.Info()
		names = append(names, de.Name())
		bytes += info.Size()
	}
	return names, bytes
}

// Entries survive a restart: a new store over the same directory
// rebuilds its index from the files and answers without the origin.
func TestDiskRestart(t *testing.T) {
	dir := t.TempDir()
	var o *origin
	o = newOrigin(t, counted(&o))
	f := diskFront(t, o, dir, 1<<20, 1<<20)
	want := map[string]string{}
	for _, p := range []string{"/a", "/b", "/c"} {
		_, want[p] = f.do(t, "GET", p)
	}
	f.stop()
	if names, _ := files(t, dir); len(names) != 3 {
		t.Fatalf("files after stop: %v", names)
	}
	f2 := diskFront(t, o, dir, 1<<20, 1<<20)
	if st := f2.c.Store().Stats(); st.DiskEntries != 3 || st.Entries != 0 {
		t.Fatalf("after restart: %+v", st)
	}
	for _, p := range []string{"/a", "/b", "/c"} {
		resp, body := f2.do(t, "GET", p)
		if body != want[p] || resp.Header.Get("Cache-Status") != "switchyard; hit" {
			t.Errorf("%s after restart: %q %q", p, resp.Header.Get("Cache-Status"), body[:10])
		}
	}
	if n := o.n.Load(); n != 3 {
		t.Errorf("origin asked %d times, want 3", n)
	}
	if st := f2.c.Store().Stats(); st.DiskLoads != 3 || st.Entries != 3 {
		t.Errorf("stats: %+v", st)
	}
}

// What memory evicts is read back from disk.
func TestDiskBehindMemory(t *testing.T) {
	dir := t.TempDir()
	var o *origin
	o = newOrigin(t, counted(&o))
	f := diskFront(t, o, dir, 4<<10, 1<<20) // memory holds ~3 entries
	for i := range 10 {
		f.do(t, "GET", fmt.Sprintf("/k%d", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.c.Store().Stats().DiskWrites < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("disk writes: %+v", f.c.Store().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := f.c.Store().Stats()
	if st.Evictions == 0 || st.Entries >= 10 {
		t.Fatalf("memory did not evict: %+v", st)
	}
	resp, body := f.do(t, "GET", "/k0")
	if resp.Header.Get("Cache-Status") != "switchyard; hit" || !strings.HasPrefix(body, "/k0 #1 ") {
		t.Errorf("/k0 from disk: %q %q", resp.Header.Get("Cache-Status"), body[:8])
	}
	if n := o.n.Load(); n != 10 {
		t.Errorf("origin asked %d times, want 10", n)
	}
	// A purge reaches entries that are only on disk.
	if n := f.c.Store().PurgeURL(f.srv.URL+"/k1", Hard); n != 1 {
		t.Errorf("purged %d, want 1", n)
	}
	resp, _ = f.do(t, "GET", "/k1")
	if !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss") {
		t.Errorf("/k1 after purge: %q", resp.Header.Get("Cache-Status"))
	}
}

// A corrupt file is dropped, never served: flipped body bytes (bad
// checksum, found when read), a truncated file and a bad header (found
// at start).
func TestDiskCorrupt(t *testing.T) {
	dir := t.TempDir()
	var o *origin
	o = newOrigin(t, counted(&o))
	f := diskFront(t, o, dir, 1<<20, 1<<20)
	for _, p := range []string{"/flip", "/trunc", "/magic", "/meta"} {
		f.do(t, "GET", p)
	}
	f.stop()
	name := func(p string) string {
		return filepath.Join(dir, fileName("\x00p="+p+"\x00q=", nil, nil))
	}
	mutate := func(p string, fn func([]byte) []byte) {
		b, err := os.ReadFile(name(p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name(p), fn(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mutate("/flip", func(b []byte) []byte { b[len(b)-5] ^= 0x20; return b })
	mutate("/trunc", func(b []byte) []byte { return b[:len(b)-100] })
	mutate("/magic", func(b []byte) []byte { b[0] = 'X'; return b })
	mutate("/meta", func(b []byte) []byte { b[diskHeadLen] = '['; return b })

	f2 := diskFront(t, o, dir, 1<<20, 1<<20)
	if st := f2.c.Store().Stats(); st.DiskEntries != 1 || st.DiskCorrupt != 3 {
		t.Fatalf("after restart: %+v (want the flipped file indexed, three dropped)", st)
	}
	before := o.n.Load()
	for _, p := range []string{"/flip", "/trunc", "/magic", "/meta"} {
		resp, body := f2.do(t, "GET", p)
		if !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss") || strings.Contains(body, "X") {
			t.Errorf("%s: %q %q", p, resp.Header.Get("Cache-Status"), body[:12])
		}
	}
	if st := f2.c.Store().Stats(); st.DiskCorrupt != 4 || o.n.Load() != before+4 {
		t.Errorf("stats %+v, origin %d (want 4 corrupt, 4 new origin requests)", st, o.n.Load()-before)
	}
	f2.stop()
	for _, p := range []string{"/flip", "/trunc", "/magic", "/meta"} {
		if _, err := os.Stat(name(p)); err != nil {
			t.Errorf("%s: the fresh answer was not written back: %v", p, err)
		}
	}
}

// The disk stays within its size, evicting the least recently used files.
func TestDiskBound(t *testing.T) {
	dir := t.TempDir()
	var o *origin
	o = newOrigin(t, counted(&o))
	const bound = 10 << 10
	f := diskFront(t, o, dir, 1<<20, bound)
	for i := range 50 {
		f.do(t, "GET", fmt.Sprintf("/k%d", i))
	}
	f.stop()
	names, bytes := files(t, dir)
	st := f.c.Store().Stats()
	if bytes > bound || st.DiskBytes != bytes || len(names) == 0 || st.DiskEvictions == 0 {
		t.Fatalf("%d files, %d bytes (bound %d), stats %+v", len(names), bytes, bound, st)
	}
	// Restarting with a smaller bound evicts down to it.
	f2 := diskFront(t, o, dir, 1<<20, bound/2)
	f2.stop()
	if _, bytes := files(t, dir); bytes > bound/2 {
		t.Errorf("%d bytes after restart with bound %d", bytes, bound/2)
	}
}

func sizeOf(n int64) config.ByteSize { return config.ByteSize(n) }

// Concurrent fills, reads back from disk and purges leave a directory
// whose every file verifies and whose size the index counts exactly.
func TestDiskConcurrent(t *testing.T) {
	dir := t.TempDir()
	var o *origin
	o = newOrigin(t, counted(&o))
	f := diskFront(t, o, dir, 4<<10, 1<<20)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				p := fmt.Sprintf("/k%d", (i*7+g)%20)
				resp, err := http.Get(f.srv.URL + p)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.HasPrefix(string(b), p+" #") {
					t.Errorf("%s: %q", p, b[:min(len(b), 12)])
				}
				if g == 0 && i%5 == 0 {
					f.c.Store().PurgePrefix(strings.TrimPrefix(f.srv.URL, "http://")+"/k1", Soft)
				}
			}
		}()
	}
	wg.Wait()
	f.stop()
	names, bytes := files(t, dir)
	d, err := openDisk(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for _, n := range names {
		if _, err := d.read(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if st := f.c.Store().Stats(); st.DiskBytes != bytes || st.DiskEntries != int64(len(names)) || st.DiskCorrupt != 0 {
		t.Errorf("index %d bytes in %d files, directory %d bytes in %d files, %d corrupt", st.DiskBytes, st.DiskEntries, bytes, len(names), st.DiskCorrupt)
	}
}
