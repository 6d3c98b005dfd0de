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

// TestMemoryFootprint writes 100,000 records, reads them all back and logs
// the process's resident memory. It is slow, so it runs only when
// SANGSAENG_STORE_MEMTEST is set:
//
//	SANGSAENG_STORE_MEMTEST=1 go test ./store -run MemoryFootprint -v
func TestMemoryFootprint(t *testing.T) {
	if os.Getenv("SANGSAENG_STORE_MEMTEST") == "" {
		t.Skip("set SANGSAENG_STORE_MEMTEST=1 to run")
	}
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
	t.Logf("wrote %d records in %v", total, time.Since(start))
	logMem(t, "after writing")

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
	logMem(t, "after listing all")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	s, err = Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reopened in %v, count %d, size %d", time.Since(start), s.Count(), s.Size())
	for _, a := range authors {
		var m int
		if err := s.ScanAuthor(ch, a.id, 1, func(*protocol.Signed) error { m++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	logMem(t, "after reopening and scanning")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func logMem(t *testing.T, when string) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Logf("%s: heap in use %d MB", when, ms.HeapInuse>>20)
		return
	}
	defer f.Close()
	var fields []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"VmRSS:", "VmHWM:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(line, k) {
				fields = append(fields, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	t.Logf("%s: %s; Go heap in use %d MB, Go sys %d MB", when, strings.Join(fields, ", "), ms.HeapInuse>>20, ms.Sys>>20)
}
