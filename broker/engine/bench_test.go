package engine

import (
	"context"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

func BenchmarkPublishConfirmed(b *testing.B) {
	for _, size := range []int{128, 1024} {
		b.Run(byteSize(size), func(b *testing.B) {
			br, err := Open(Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			br.Declare("q", broker.QueueConfig{DedupWindow: -1})
			body := make([]byte, size)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.SetParallelism(128)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := br.Publish(ctx, "q", broker.Message{Body: body}, broker.PublishOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(br.log.Syncs()), "fsyncs")
		})
	}
}

func byteSize(n int) string {
	if n >= 1024 {
		return "1KiB"
	}
	return "128B"
}
