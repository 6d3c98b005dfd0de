package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// Result says what Put did with a record.
type Result int

const (
	// Stored means the record is new and now indexed: it holds its
	// (channel, author, seq) slot and appears in every listing.
	Stored Result = iota + 1
	// Duplicate means a record with the same CID was already stored; nothing
	// was written.
	Duplicate
	// Forked means another record already holds the same (channel, author,
	// seq). The new record is stored by CID and kept with the first as fork
	// evidence (see Forks); it does not replace the first in any index or
	// move the author's head, and listings do not show it.
	Forked
)

// String returns the result's name.
func (r Result) String() string {
	switch r {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Forked:
		return "forked"
	default:
		return fmt.Sprintf("Result(%d)", int(r))
	}
}

// maxConflictRetries bounds how often one write is retried when a concurrent
// write touched the same keys.
const maxConflictRetries = 100

// Put writes one record with its index entries and the head it advances, in
// one transaction, durable before Put returns (Badger syncs it; writes
// that commit at the same time share a sync). The record must have
// been verified (protocol.Open or protocol.Seal): the store does not check
// its signature or CID again.
func (s *Store) Put(rec *protocol.Signed) (Result, error) {
	res, err := s.PutBatch([]*protocol.Signed{rec})
	if err != nil {
		return 0, err
	}
	return res[0], nil
}

// PutBatch writes records as Put does, with one sync to disk, in as few
// transactions as Badger's size limit allows (usually one). The records may come
// in any order, include several of one author and repeat each other: the
// outcome and the results are those of calling Put on each in turn. Every
// record is checked before anything is written; on an error, the results
// returned are those of the records written before the failure (a prefix
// of recs, possibly empty).
func (s *Store) PutBatch(recs []*protocol.Signed) ([]Result, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store put: %w", err)
	}
	defer s.leave()

	items := make([]putItem, len(recs))
	for i, r := range recs {
		it, err := prepare(r)
		if err != nil {
			return nil, fmt.Errorf("store put %s: %w", describe(r), err)
		}
		items[i] = it
	}
	results := make([]Result, len(items))
	for start := 0; start < len(items); {
		n, err := s.commit(items[start:], results[start:])
		if err != nil {
			return results[:start], fmt.Errorf("store put %s: %w", items[start].cid, err)
		}
		start += n
	}
	return results, nil
}

// describe names a record in an error message.
func describe(r *protocol.Signed) string {
	if r == nil || !r.CID.Defined() {
		return "record"
	}
	return r.CID.String()
}

// putItem is a record checked and taken apart for writing.
type putItem struct {
	rec     *protocol.Signed
	value   []byte // Badger's value under 'r': the envelope
	cid     cid.Cid
	channel cid.Cid
	author  peer.ID
	seq     uint64
	prev    cid.Cid

	// Set by apply when the record was staged: the head entry it wrote
	// or kept, and its value, for the store's mirror of heads.
	headKey []byte
	newHead uint64
}

// prepare checks that rec can be indexed.
func prepare(rec *protocol.Signed) (putItem, error) {
	if rec == nil || rec.Record == nil {
		return putItem{}, fmt.Errorf("%w: no record", ErrInvalid)
	}
	r := rec.Record
	it := putItem{rec: rec, cid: rec.CID, channel: r.Channel, author: r.Author, seq: r.Seq, prev: r.Prev, value: rec.Envelope}
	if !it.cid.Defined() {
		return putItem{}, fmt.Errorf("%w: no CID", ErrInvalid)
	}
	if len(rec.Envelope) == 0 {
		return putItem{}, fmt.Errorf("%w: no envelope", ErrInvalid)
	}
	if r.Kind == protocol.KindChannelGenesis {
		it.channel = rec.ChannelOf() // the channel a genesis founds is its own CID
	}
	if !it.channel.Defined() {
		return putItem{}, fmt.Errorf("%w: no channel", ErrInvalid)
	}
	if it.seq == 0 {
		return putItem{}, fmt.Errorf("%w: seq 0", ErrInvalid)
	}
	if it.author == "" {
		return putItem{}, fmt.Errorf("%w: no author", ErrInvalid)
	}
	for _, p := range []struct {
		what string
		b    []byte
	}{
		{"channel", it.channel.Bytes()},
		{"author", []byte(it.author)},
		{"kind", []byte(r.Kind)},
		{"CID", it.cid.Bytes()},
	} {
		if err := checkPart(p.what, p.b); err != nil {
			return putItem{}, err
		}
	}
	for _, l := range r.Links {
		if !l.CID.Defined() {
			return putItem{}, fmt.Errorf("%w: link %q without CID", ErrInvalid, l.Rel)
		}
		if err := checkPart("link target", l.CID.Bytes()); err != nil {
			return putItem{}, err
		}
		if err := checkPart("link rel", []byte(l.Rel)); err != nil {
			return putItem{}, err
		}
	}
	return it, nil
}

// commit writes a prefix of items in one transaction, as long a prefix as
// fits, retrying on conflicts. It fills results and returns how many items
// it wrote.
func (s *Store) commit(items []putItem, results []Result) (int, error) {
	conflicts := 0
	for {
		txn := s.db.NewTransaction(true)
		n := len(items)
		var added int64
		for i := range items {
			res, err := apply(txn, &items[i])
			if errors.Is(err, badger.ErrTxnTooBig) && i > 0 {
				n = i // write the records before this one, then go on
				break
			}
			if err != nil {
				txn.Discard()
				return 0, err
			}
			results[i] = res
			if res != Duplicate {
				added++
			}
		}
		if n < len(items) {
			txn.Discard()
			items, results = items[:n], results[:n]
			continue
		}
		fits, err := s.commitNumbered(txn, items, results)
		if !fits {
			// The arrival entries did not fit: write half as many records.
			items, results = items[:max(1, len(items)/2)], results[:max(1, len(items)/2)]
			continue
		}
		if errors.Is(err, badger.ErrConflict) && conflicts < maxConflictRetries {
			conflicts++
			backoff(conflicts)
			continue
		}
		if err != nil {
			return 0, err
		}
		// The heads first: whoever sees the count grow finds the heads
		// that came with it.
		for i := range items[:n] {
			if it := &items[i]; it.headKey != nil {
				s.noteHead(it.headKey, it.newHead)
			}
		}
		s.count.Add(added)
		return n, nil
	}
}

// commitNumbered gives each Stored record of the transaction the next
// arrival number (see arrival.go) and commits it, in number order with
// every other numbered commit. fits is false, and the transaction
// discarded, when the arrival entries make it too big.
func (s *Store) commitNumbered(txn *badger.Txn, items []putItem, results []Result) (fits bool, err error) {
	s.arrivalMu.Lock()
	first := s.arrival
	for i, res := range results {
		if res != Stored {
			continue
		}
		s.arrival++
		if err := txn.Set(arrivalKey(s.arrival), encodeArrival(items[i].channel, items[i].cid)); err != nil {
			s.arrival = first
			s.arrivalMu.Unlock()
			txn.Discard()
			if errors.Is(err, badger.ErrTxnTooBig) && len(results) > 1 {
				return false, nil
			}
			return true, err
		}
	}
	done := make(chan error, 1)
	txn.CommitWith(func(err error) { done <- err })
	s.arrivalMu.Unlock()
	err = <-done
	if errors.Is(err, badger.ErrTxnTooBig) && len(results) > 1 {
		// Badger counts the size of its own commit marker only when it
		// commits; the numbers taken are left unused.
		return false, nil
	}
	return true, err
}

// backoff waits a little before the nth retry of a conflicting write, so
// that writers contending for one author's chain do not keep colliding.
func backoff(n int) {
	if n < 3 {
		return
	}
	time.Sleep(time.Duration(rand.IntN(min(n, 20)*100)) * time.Microsecond)
}

// apply stages one record in txn and says what it amounts to. Reads inside
// txn see what earlier records of the same batch staged.
func apply(txn *badger.Txn, it *putItem) (Result, error) {
	it.headKey = nil // a retried transaction applies the item again
	rk := recordKey(it.cid)
	if _, err := txn.Get(rk); err == nil {
		return Duplicate, nil
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return 0, err
	}
	if err := txn.Set(rk, it.value); err != nil {
		return 0, err
	}

	held, ok, err := getSeq(txn, it.channel, it.author, it.seq)
	if err != nil {
		return 0, err
	}
	if ok {
		if err := setEvidence(txn, it, it.seq, held.cid, it.cid); err != nil {
			return 0, err
		}
		return Forked, nil
	}

	r := it.rec.Record
	sets := [][2][]byte{
		{seqKey(it.channel, it.author, it.seq), encodeSeqValue(it.cid, it.prev)},
		{channelKey(it.channel, r.Time, it.cid), nil},
		{kindKey(r.Kind, r.Time, it.cid), nil},
	}
	for _, l := range r.Links {
		sets = append(sets, [2][]byte{backlinkKey(l.CID, l.Rel, it.cid), nil})
	}
	for _, kv := range sets {
		if err := txn.Set(kv[0], kv[1]); err != nil {
			return 0, err
		}
	}

	// Chain links with the neighbours already held. A record whose prev is
	// not the record held at seq-1 proves that the author signed two records
	// for seq-1.
	var before seqValue
	haveBefore := false
	if it.seq > 1 {
		if before, haveBefore, err = getSeq(txn, it.channel, it.author, it.seq-1); err != nil {
			return 0, err
		}
		if haveBefore && !before.cid.Equals(it.prev) {
			if err := setEvidence(txn, it, it.seq-1, before.cid, it.cid); err != nil {
				return 0, err
			}
		}
	}
	after, haveAfter, err := getSeq(txn, it.channel, it.author, it.seq+1)
	if err != nil {
		return 0, err
	}
	if haveAfter && !after.prev.Equals(it.cid) {
		if err := setEvidence(txn, it, it.seq, it.cid, after.cid); err != nil {
			return 0, err
		}
	}

	// The head: the highest seq up to which the chain from seq 1 is complete
	// and unbroken.
	hk := headKey(it.channel, it.author)
	head, haveHead, err := getU64(txn, hk)
	if err != nil {
		return 0, err
	}
	newHead := head
	if it.seq == head+1 {
		linked := !it.prev.Defined()
		if it.seq > 1 {
			linked = haveBefore && before.cid.Equals(it.prev)
		}
		if linked {
			newHead = it.seq
			last, next, haveNext := it.cid, after, haveAfter
			for haveNext && next.prev.Equals(last) {
				newHead++
				last = next.cid
				if next, haveNext, err = getSeq(txn, it.channel, it.author, newHead+1); err != nil {
					return 0, err
				}
			}
		}
	}
	if newHead != head || !haveHead {
		if err := txn.Set(hk, encodeU64(newHead)); err != nil {
			return 0, err
		}
	}
	it.headKey, it.newHead = hk, newHead
	return Stored, nil
}

// setEvidence records that a and b conflict at seq of it's author.
func setEvidence(txn *badger.Txn, it *putItem, seq uint64, a, b cid.Cid) error {
	if err := txn.Set(forkKey(it.channel, it.author, seq, a), nil); err != nil {
		return err
	}
	return txn.Set(forkKey(it.channel, it.author, seq, b), nil)
}

// getSeq reads the 's' entry of (ch, author, seq).
func getSeq(txn *badger.Txn, ch cid.Cid, author peer.ID, seq uint64) (seqValue, bool, error) {
	item, err := txn.Get(seqKey(ch, author, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return seqValue{}, false, nil
	}
	if err != nil {
		return seqValue{}, false, err
	}
	var sv seqValue
	err = item.Value(func(v []byte) error {
		var err error
		sv, err = decodeSeqValue(v)
		return err
	})
	if err != nil {
		return seqValue{}, false, err
	}
	return sv, true, nil
}

// getU64 reads an 8-byte integer value.
func getU64(txn *badger.Txn, key []byte) (uint64, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var n uint64
	err = item.Value(func(v []byte) error {
		var err error
		n, err = decodeU64(v)
		return err
	})
	return n, err == nil, err
}

func encodeU64(v uint64) []byte {
	return keyBuf(make([]byte, 0, 8)).u64(v)
}
