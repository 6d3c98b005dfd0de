package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// BenchmarkMemoryFootprint writes 100,000 records, lists them all, reopens
// the store and scans every author, and reports the process's resident
// memory after each step (rss-*-MB, anon-*-MB) and the time to reopen. It
// runs once whatever b.N:
//
//	go test ./store -run '^$' -bench MemoryFootprint -benchtime 1x
func BenchmarkMemoryFootprint(b *testing.B) {
	for range b.N {
		memoryFootprint(b)
	}
}

func memoryFootprint(t *testing.B) {
	const total, batch = 100_000, 500
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	ch := testChannel("mem")
	authors := []*author{newAuthor(t), newAuthor(t), newAuthor(t), newAuthor(t)}
	rng := rand.New(rand.NewPCG(1, 1))
	start := time.Now()
	for i := 0; i < total; i += batch {
		recs := make([]*protocol.Signed, 0, batch)
		for j := i; j < i+batch; j++ {
			a := authors[j%len(authors)]
			recs = append(recs, a.next(t, ch, "note", int64(j), map[string]any{
				"text": fmt.Sprintf("%x", rng.Uint64()) + strings.Repeat(" lot 4711 part 86510-A1000 qty 350.5", 14), "n": int64(j),
			}))
		}
		if _, err := s.PutBatch(recs); err != nil {
			t.Fatal(err)
		}
	}
	t.ReportMetric(time.Since(start).Seconds(), "write-s")
	logMem(t, "write")

	n := 0
	cursor := ""
	for {
		page, next, err := s.ByChannel(ch, 1000, cursor)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	if n != total {
		t.Fatalf("listed %d records", n)
	}
	logMem(t, "list")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	s, err = Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.ReportMetric(float64(time.Since(start).Milliseconds()), "reopen-ms")
	if s.Count() != total {
		t.Fatalf("count %d after reopening, want %d", s.Count(), total)
	}
	for _, a := range authors {
		var m int
		if err := s.ScanAuthor(ch, a.id, 1, func(*protocol.Signed) error { m++; return nil }); err != nil {
			t.Fatal(err)
		}
		if m != total/len(authors) {
			t.Fatalf("scanned %d records of an author, want %d", m, total/len(authors))
		}
	}
	logMem(t, "reopen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// logMem reports the resident memory now, after a GC, as metrics named
// after step.
func logMem(t *testing.B, step string) {
	runtime.GC()
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.ReportMetric(float64(ms.HeapInuse>>20), "heap-"+step+"-MB")
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for k, name := range map[string]string{"VmRSS:": "rss", "RssAnon:": "anon"} {
			if v, ok := strings.CutPrefix(sc.Text(), k); ok {
				var kb float64
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
				t.ReportMetric(kb/1024, name+"-"+step+"-MB")
			}
		}
	}
}
