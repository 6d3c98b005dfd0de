package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestScanEnvelopesBoundedByBytes: ScanEnvelopes reads large records in
// chunks of about scanChunkBytes, not scanChunk records, and still gives
// every record once, in seq order, across the chunks.
func TestScanEnvelopesBoundedByBytes(t *testing.T) {
	s := newStore(t)
	ch := testChannel("large")
	a := newAuthor(t)
	const k = 40 // 40 envelopes of some 60 KiB: about 2.4 chunks
	var want []cid.Cid
	for i := range k {
		r := a.next(t, ch, "note", int64(i+1), note(fmt.Sprint(i, " ", strings.Repeat("x", 60<<10))))
		mustPut(t, s, r, Stored)
		want = append(want, r.CID)
	}
	var got []cid.Cid
	err := s.ScanEnvelopes(ch, a.id, 1, func(c cid.Cid, env []byte) error {
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scanned %d records, want %d in seq order", len(got), len(want))
	}
	// The chunk read first holds some 17 of these envelopes: record 30
	// is read only after the first ones were given out. Take it away
	// meanwhile, and the scan finds it missing; a scan that read all 40
	// at once would not notice.
	first := true
	err = s.ScanEnvelopes(ch, a.id, 1, func(cid.Cid, []byte) error {
		if first {
			first = false
			return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(recordKey(want[30])) })
		}
		return nil
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("scan after record 30 was deleted under it: %v, want ErrCorrupt (read in a later chunk)", err)
	}
}

// TestCursorAfter: the cursor CursorAfter makes for a record is the one
// ByChannel returns after it, and it resumes ByKind and another channel's
// listing at the same place in the order.
func TestCursorAfter(t *testing.T) {
	s := newStore(t)
	a := newAuthor(t)
	one, two := testChannel("one"), testChannel("two")
	var all []*protocol.Signed
	for i := range 6 {
		ch := one
		if i%2 == 1 {
			ch = two
		}
		r := a.next(t, ch, "note", int64(100-i), note(fmt.Sprint(i)))
		mustPut(t, s, r, Stored)
		all = append(all, r)
	}
	page, next, err := s.ByChannel(one, 1, "")
	if err != nil || len(page) != 1 {
		t.Fatal(page, err)
	}
	if got := CursorAfter(page[0].Record.Time, page[0].CID); got != next {
		t.Fatalf("CursorAfter = %q, ByChannel's next = %q", got, next)
	}
	// all[2] (time 98) is in channel one; after it come all[3] (97, two)
	// and all[4] (96, one) and so on.
	cur := CursorAfter(all[2].Record.Time, all[2].CID)
	if p, _, err := s.ByChannel(two, 10, cur); err != nil || len(p) != 2 || p[0].CID != all[3].CID {
		t.Fatalf("channel two after record 2: %v %v", p, err)
	}
	if p, _, err := s.ByKind("note", 10, cur); err != nil || len(p) != 3 || p[0].CID != all[3].CID {
		t.Fatalf("notes after record 2: %v %v", p, err)
	}
}
