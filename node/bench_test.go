package node

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

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

// BenchmarkIngestBundle measures the receiving end of gossip alone: a
// member's batch-signed notes, in bundles of protocol.MaxBundle, through
// the channel's validator (check, verify one signature per batch, store
// durably). It reports the records stored per second and the CPU time
// per record, the figure that bounds a two-core machine.
func BenchmarkIngestBundle(b *testing.B) {
	a := startNode(b, "A")
	ctx := context.Background()
	ch, err := a.CreateChannel(ctx, "ingest", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	mk, mid := newKey(b)
	addMember(b, a, ch, mid)
	a.quota.rate = 0 // the bench measures the path, not the quota
	recs := chainBatch(b, mk, ch, 0, cid.Undef, b.N, protocol.MaxBundle, "납품 예정 알림: 브레이크 패드 58101-3X000, 로트 L261126-A1")
	v := a.validator(ch)
	topic := Topic(ch)
	var cpu0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
	b.ResetTimer()
	for i := 0; i < len(recs); i += protocol.MaxBundle {
		envs := make([][]byte, 0, protocol.MaxBundle)
		for _, s := range recs[i:min(i+protocol.MaxBundle, len(recs))] {
			envs = append(envs, s.Envelope)
		}
		m := &pubsub.Message{Message: &pb.Message{Data: protocol.EncodeBundle(envs), Topic: &topic}, ReceivedFrom: mid}
		if res := v(ctx, mid, m); res != pubsub.ValidationAccept {
			b.Fatalf("bundle at %d: %v", i, res)
		}
	}
	b.StopTimer()
	var cpu1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
	cpu := time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano())
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/record")
	if h, _ := a.store.Head(ch, mid); h != uint64(b.N) {
		b.Fatalf("head %d after %d records", h, b.N)
	}
}
