package node

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// BenchmarkCatchup measures the rate at which a restarted member ingests
// records waiting at a partner, through sync: signature checks on every
// core, batched durable writes. SANGSAENG_CATCHUP_RECORDS sets how many
// records wait (default 20,000). Run it with -benchtime 1x.
func BenchmarkCatchup(b *testing.B) {
	total := 20000
	if s := os.Getenv("SANGSAENG_CATCHUP_RECORDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		total = v
	}
	for range b.N {
		b.StopTimer()
		a, m := startNode(b, "A"), startNode(b, "B")
		ch := link(b, a, m, "ab")
		cfg := m.cfg
		if err := m.Close(); err != nil {
			b.Fatal(err)
		}
		// A's chain of notes, sealed and written in batches, as if
		// published while B was down.
		seq, prev, err := a.ownHead(ch)
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]*protocol.Signed, 0, 1000)
		var last *protocol.Signed
		for i := range total {
			seq++
			r := &protocol.Record{Channel: ch, Author: a.self, Seq: seq, Prev: prev, Time: time.Now().UnixMilli(),
				Kind: "note", Body: map[string]any{"text": fmt.Sprintf("납품 예정 알림 %d: 브레이크 패드 58101-3X000, 로트 L261126-A1", i)}}
			s, err := protocol.Seal(r, a.key)
			if err != nil {
				b.Fatal(err)
			}
			prev, last = s.CID, s
			if batch = append(batch, s); len(batch) == cap(batch) || i == total-1 {
				if _, err := a.store.PutBatch(batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		b.StartTimer()
		start := time.Now()
		m = reopen(b, cfg)
		for !has(m, last.CID) {
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		if h := heads(b, m, ch)[a.ID()]; h != last.Record.Seq {
			b.Fatalf("caught up to %d, want %d", h, last.Record.Seq)
		}
		b.ReportMetric(float64(total)/took.Seconds(), "records/s")
		m.Close()
		a.Close()
	}
}

// BenchmarkPublish measures a node's own publishing: validate, sign, store
// durably, gossip to one partner, with 64 concurrent publishers.
func BenchmarkPublish(b *testing.B) {
	a, m := startNode(b, "A"), startNode(b, "B")
	ch := link(b, a, m, "ab")
	body := map[string]any{"text": "납품 예정 알림: 브레이크 패드 58101-3X000, 로트 L261126-A1"}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Publish(context.Background(), ch, "note", body, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
