package protocol

import (
	"testing"

	"github.com/ipfs/go-cid"
)

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkEncode(b *testing.B) {
	r := testRecord(b, 40, 2, Sum([]byte("prev")))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Encode(); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkDecode(b *testing.B) {
	s := mustSeal(b, 40, testRecord(b, 40, 2, Sum([]byte("prev"))))
	b.SetBytes(int64(len(s.Bytes)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(s.Bytes); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkSeal(b *testing.B) {
	k, _ := testKey(b, 40)
	r := testRecord(b, 40, 1, cid.Undef)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(r, k); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkOpen verifies the signature and decodes, as a receiver does.
func BenchmarkOpen(b *testing.B) {
	s := mustSeal(b, 40, testRecord(b, 40, 2, Sum([]byte("prev"))))
	b.SetBytes(int64(len(s.Envelope)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(s.Envelope); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkLoad decodes a stored envelope without the signature check.
func BenchmarkLoad(b *testing.B) {
	s := mustSeal(b, 40, testRecord(b, 40, 2, Sum([]byte("prev"))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(s.Envelope); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}
