package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

// TestBinaryBrokerRepair: one flipped byte in the middle of the active log
// segment stops `switchyard broker` with an error naming the file and
// pointing at repair; `switchyard broker repair` drops only the damaged
// message, says so, and the other 199 are kept.
func TestBinaryBrokerRepair(t *testing.T) {
	dir := t.TempDir()
	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b.Declare("q", broker.QueueConfig{})
	for i := range 200 {
		if _, err := b.Publish(context.Background(), "q", broker.Message{Body: fmt.Appendf(nil, "message %03d", i)}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, _ := os.ReadFile(segs[0])
	mid := strings.Index(string(data), "message 100")
	data[mid] ^= 0x20
	os.WriteFile(segs[0], data, 0o644)

	run := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	code, out := run("broker", "--data", dir, "--http", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, segs[0]) || !strings.Contains(out, "switchyard broker repair --data "+dir) {
		t.Fatalf("broker on a corrupt log: exit %d, %q", code, out)
	}
	code, out = run("broker", "repair", "--data", dir)
	if code != 0 || !strings.Contains(out, "1 records lost") || !strings.Contains(out, segs[0]) {
		t.Fatalf("repair: exit %d, %q", code, out)
	}
	t.Logf("repair said:\n%s", out)
	if code, out = run("broker", "repair", "--data", dir); code != 0 || !strings.Contains(out, "no damage found") {
		t.Fatalf("second repair: exit %d, %q", code, out)
	}
	b, err = engine.Open(engine.Config{Dir: dir})
	if err != nil {
		t.Fatalf("open after repair: %v", err)
	}
	defer b.Close()
	ds, _ := b.Receive(context.Background(), "q", broker.ReceiveOptions{Max: 1000})
	if len(ds) != 199 || string(ds[99].Body) != "message 099" || string(ds[100].Body) != "message 101" {
		t.Fatalf("after repair %d messages", len(ds))
	}
}
