package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
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
