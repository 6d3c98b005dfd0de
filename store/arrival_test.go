package store

import (
	"fmt"
	"sync"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// readArrivals follows the index from after to its current end.
func readArrivals(t *testing.T, s *Store, after uint64, ch cid.Cid, maxBytes int) []Arrived {
	t.Helper()
	var out []Arrived
	for {
		recs, next, err := s.Arrivals(after, ch, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 && next == after {
			return out
		}
		out = append(out, recs...)
		after = next
	}
}

func TestArrivalsOrderAndFilter(t *testing.T) {
	s := newStore(t)
	a, b := newAuthor(t), newAuthor(t)
	x, y := testChannel("x"), testChannel("y")
	var want, wantX []*protocol.Signed
	for i := range 30 {
		r := a.next(t, x, "note", int64(i), note(fmt.Sprint(i)))
		wantX = append(wantX, r)
		want = append(want, r)
		want = append(want, b.next(t, y, "note", int64(i), note(fmt.Sprint(i))))
	}
	for _, r := range want {
		mustPut(t, s, r, Stored)
	}
	// Duplicates and fork evidence take no number.
	mustPut(t, s, want[0], Duplicate)
	mustPut(t, s, a.variant(t, wantX[3], "fork"), Forked)
	if s.LastArrival() != uint64(len(want)) {
		t.Fatalf("last arrival %d, want %d", s.LastArrival(), len(want))
	}

	// One envelope at a time: every page holds one record.
	got := readArrivals(t, s, 0, cid.Undef, 1)
	if len(got) != len(want) {
		t.Fatalf("read %d arrivals, want %d", len(got), len(want))
	}
	for i, g := range got {
		if g.Seq != uint64(i+1) || !g.Record.CID.Equals(want[i].CID) {
			t.Fatalf("arrival %d: seq %d %s, want seq %d %s", i, g.Seq, g.Record.CID, i+1, want[i].CID)
		}
	}
	gotX := readArrivals(t, s, 0, x, 1<<20)
	if len(gotX) != len(wantX) {
		t.Fatalf("channel x: %d arrivals, want %d", len(gotX), len(wantX))
	}
	for i, g := range gotX {
		if !g.Record.CID.Equals(wantX[i].CID) || g.Seq != uint64(2*i+1) {
			t.Fatalf("channel x arrival %d: seq %d", i, g.Seq)
		}
	}
	// From the middle.
	if rest := readArrivals(t, s, 50, cid.Undef, 1<<20); len(rest) != 10 || rest[0].Seq != 51 {
		t.Fatalf("after 50: %d records", len(rest))
	}
	if rest := readArrivals(t, s, ^uint64(0), cid.Undef, 1<<20); len(rest) != 0 {
		t.Fatalf("after the largest number: %d records", len(rest))
	}
}

// Concurrent writers: a reader that follows the index while they write
// sees increasing numbers and, at the end, every record exactly once: no
// record ever appears behind a number already read.
func TestArrivalsPrefixUnderConcurrency(t *testing.T) {
	s := newStore(t)
	ch := testChannel("c")
	const workers, per = 6, 200
	recs := make([][]*protocol.Signed, workers)
	for w := range workers {
		a := newAuthor(t)
		for i := range per {
			recs[w] = append(recs[w], a.next(t, ch, "note", int64(i), note(fmt.Sprint(w, i))))
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < per; i += 5 {
				if _, err := s.PutBatch(recs[w][i : i+5]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[cid.Cid]bool{}
	var after uint64
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		for _, a := range readArrivals(t, s, after, cid.Undef, 64<<10) {
			if a.Seq <= after {
				t.Fatalf("arrival %d after %d", a.Seq, after)
			}
			if seen[a.Record.CID] {
				t.Fatalf("record %s read twice", a.Record.CID)
			}
			seen[a.Record.CID] = true
			after = a.Seq
		}
		if finished {
			break
		}
	}
	if len(seen) != workers*per {
		t.Fatalf("followed %d records, want %d", len(seen), workers*per)
	}
	// Read again from the start: the same set, nothing the follower
	// passed over.
	if all := readArrivals(t, s, 0, cid.Undef, 1<<20); len(all) != workers*per {
		t.Fatalf("index holds %d records, want %d", len(all), workers*per)
	}
}

// A store written before the index is numbered when it opens, each
// author's records in chain order; numbers survive a reopen.
func TestArrivalsNumberedOnOpen(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthor(t)
	ch := testChannel("old")
	var want []*protocol.Signed
	for i := range 40 {
		want = append(want, a.next(t, ch, "note", int64(i), note(fmt.Sprint(i))))
	}
	if _, err := s.PutBatch(want); err != nil {
		t.Fatal(err)
	}
	epoch := s.ArrivalEpoch()
	if len(epoch) != 16 {
		t.Fatalf("epoch %q", epoch)
	}
	// Take the index away, as in a store from before it.
	if err := s.db.DropPrefix([]byte{pArrival}, []byte{pArrivalDone}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte{pArrivalDone}); err == nil {
			return fmt.Errorf("marker still there")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, o)
	if s.ArrivalEpoch() == epoch || len(s.ArrivalEpoch()) != 16 {
		t.Fatalf("numbered again under epoch %q, was %q: want a new one", s.ArrivalEpoch(), epoch)
	}
	epoch = s.ArrivalEpoch()
	got := readArrivals(t, s, 0, cid.Undef, 1<<20)
	if len(got) != len(want) {
		t.Fatalf("numbered %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !got[i].Record.CID.Equals(want[i].CID) {
			t.Fatalf("arrival %d is seq %d", i+1, got[i].Record.Record.Seq)
		}
	}
	next := a.next(t, ch, "note", 99, note("new"))
	mustPut(t, s, next, Stored)
	if s.LastArrival() != 41 {
		t.Fatalf("last arrival %d, want 41", s.LastArrival())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, o)
	if s.LastArrival() != 41 || s.ArrivalEpoch() != epoch {
		t.Fatalf("last arrival %d, epoch %s after reopen, want 41, %s", s.LastArrival(), s.ArrivalEpoch(), epoch)
	}
}
