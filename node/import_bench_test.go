package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// writeOrderCSV writes rows order lines, ten to an order, as a UTF-8 CSV
// with Korean headers.
func writeOrderCSV(tb testing.TB, path string, rows int) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "발주번호,발주일자,공급사사업자번호,공급사,항번,고객품번,품명,수량,단위,납기일자")
	for i := range rows {
		fmt.Fprintf(w, "PO-%07d,2026.11.20,312-86-00455,대성정밀,%d,%05d,브래킷 %d,\"1,%03d\",EA,20261127\n", i/10, i%10+1, i%1000, i, i%1000)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
}

// BenchmarkImportCSV imports an order CSV of 10,000, 100,000 and 300,000 rows
// into a real node (each document checked, then signed, stored and
// published) and reports rows per second and the largest live Go heap
// seen while it ran (what the last GC kept). The file is spooled to disk
// and read twice as a stream; what the heap holds beyond the reader is the
// node's: Badger's memtables, records waiting to be gossiped, gossipsub's
// seen-cache.
//
//	go test ./node -run '^$' -bench ImportCSV -benchtime 1x -count 3
func BenchmarkImportCSV(b *testing.B) {
	for _, rows := range []int{10_000, 100_000, 300_000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "orders.csv")
			writeOrderCSV(b, path, rows)
			for range b.N {
				b.StopTimer()
				n := startNode(b, "A")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				ch, err := n.CreateChannel(ctx, "bench", "", nil)
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				var peak atomic.Uint64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					live := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
					for {
						rtmetrics.Read(live)
						if v := live[0].Value.Uint64(); v > peak.Load() {
							peak.Store(v)
						}
						select {
						case <-stop:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
				})
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				rep, err := n.Import(ctx, ch, f, api.ImportOptions{Kind: "order", Format: "csv", File: "orders.csv"}, nil)
				elapsed := time.Since(start)
				b.StopTimer()
				close(stop)
				wg.Wait()
				f.Close()
				cancel()
				if err != nil || rep.ErrorCount != 0 || rep.Published != rows/10 {
					b.Fatalf("import: %v, %+v", err, rep)
				}
				b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
				b.ReportMetric(float64(peak.Load())/(1<<20), "peak-live-heap-MB")
				n.Close()
			}
		})
	}
}
