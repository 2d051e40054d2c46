package messagetest

import (
	"os"
	"runtime/pprof"
	"testing"
)

// ProfileTimed writes a CPU profile of a benchmark's timed part only (not
// the publishing beforehand) to $SWITCHYARD_BENCH_CPUPROFILE, if set;
// call the function it returns where the timer stops.
func ProfileTimed(b testing.TB) func() {
	path := os.Getenv("SWITCHYARD_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
