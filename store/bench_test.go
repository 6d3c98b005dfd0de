package store

import (
	"fmt"
	"testing"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// benchRecords seals n records of a typical size (about 600 bytes) from a
// few authors, outside the timer.
func benchRecords(b *testing.B, n int) []*protocol.Signed {
	b.Helper()
	ch := testChannel("bench")
	authors := []*author{newAuthor(b), newAuthor(b), newAuthor(b), newAuthor(b)}
	recs := make([]*protocol.Signed, n)
	for i := range recs {
		a := authors[i%len(authors)]
		recs[i] = a.next(b, ch, "note", int64(1_700_000_000_000+i), map[string]any{
			"text": fmt.Sprintf("lot %08d shipped: 350.5 EA of part 86510-A1000, gate 3, carrier Hanjin, "+
				"packed on pallets 1-12, temperature log attached, inspection passed, "+
				"see the order and despatch advice for the line details", i),
			"part":     "86510-A1000",
			"quantity": "350.5",
			"unit":     "EA",
		})
	}
	return recs
}

// BenchmarkPut writes one record per transaction, synced to disk by
// Badger, in plain and with encryption.
func BenchmarkPut(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchPut(b, testOptions(b)) })
	b.Run("encrypted", func(b *testing.B) {
		o := testOptions(b)
		o.EncryptionKey = make([]byte, 32)
		benchPut(b, o)
	})
}

func benchPut(b *testing.B, o Options) {
	recs := benchRecords(b, b.N)
	s := openStore(b, b.TempDir(), o)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Put(recs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPutBatch100 writes records in batches of 100 (one sync per
// batch); b.N counts records.
func BenchmarkPutBatch100(b *testing.B) {
	recs := benchRecords(b, b.N)
	s := openStore(b, b.TempDir(), testOptions(b))
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		if _, err := s.PutBatch(recs[i:min(i+100, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
