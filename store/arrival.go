package store

// The arrival index: the order in which the store took its records.
//
// Every record that is Stored (not a duplicate, not fork evidence) gets the
// next arrival number in the transaction that stores it:
//
//	'a' arrival(8)  → [len] channel cid
//	'A'             → epoch(8): the index covers every record
//
// The epoch is random, drawn when the index is made: a store restored from
// a backup keeps it, one rebuilt from scratch gets a new one, so a number
// is never taken for the same place in another numbering.
//
// Numbers are handed out, and the transactions that carry them committed,
// under one lock (arrivalMu) with Badger's asynchronous commit, which
// takes a commit timestamp and queues the write in that order. Badger
// shows a reader every commit up to its read timestamp, so a reader sees a
// prefix of the numbers: once it has read number n, no record numbered
// below n can appear later. A transaction that fails (a conflict) leaves
// its numbers unused; the numbers have gaps, never reorderings. That is
// what lets an event stream resume after the last number a client saw and
// miss nothing (see docs/design.md, "Event stream").

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

const (
	pArrival     = 'a'
	pArrivalDone = 'A'
)

func arrivalKey(n uint64) []byte {
	return newKey(pArrival, 8).u64(n)
}

func encodeArrival(ch, c cid.Cid) []byte {
	cb := ch.Bytes()
	return keyBuf(make([]byte, 0, 2+len(cb)+c.ByteLen())).part(cb).raw(c.Bytes())
}

func decodeArrival(v []byte) (ch, c cid.Cid, err error) {
	r := keyReader{b: v}
	cb := r.part()
	rest := r.rest()
	ch = r.cid(cb)
	c = r.cid(rest)
	return ch, c, r.err
}

// Arrived is a record with its arrival number.
type Arrived struct {
	Seq    uint64
	Record *protocol.Signed
}

// ArrivalEpoch names the store's numbering (16 hex digits): arrival
// numbers of two stores, or of a store numbered again, are only comparable
// when their epochs are equal.
func (s *Store) ArrivalEpoch() string { return s.epoch }

// LastArrival returns the highest arrival number handed out so far (0 for
// an empty store). A record with that number may still be committing.
func (s *Store) LastArrival() uint64 {
	s.arrivalMu.Lock()
	defer s.arrivalMu.Unlock()
	return s.arrival
}

// arrivalScanLimit bounds the index entries one Arrivals call looks at, so
// that a call filtered to a quiet channel returns in bounded time.
const arrivalScanLimit = 4096

// Arrivals returns, in arrival order, the records numbered after after, of
// channel ch (every channel when ch is cid.Undef): as many as fit in
// maxBytes of envelopes (at least one when there is one), looking at no
// more than a few thousand index entries. next is the number to pass as
// after on the following call: the last number looked at, which may be a
// record of another channel. When recs is empty and next equals after,
// there is nothing newer yet.
func (s *Store) Arrivals(after uint64, ch cid.Cid, maxBytes int) (recs []Arrived, next uint64, err error) {
	if err := s.enter(); err != nil {
		return nil, after, fmt.Errorf("store arrivals: %w", err)
	}
	defer s.leave()
	next = after
	bytes := 0
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pArrival}})
		defer it.Close()
		if after == ^uint64(0) {
			return nil
		}
		looked := 0
		for it.Seek(arrivalKey(after + 1)); it.Valid() && looked < arrivalScanLimit; it.Next() {
			looked++
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: arrival key %x", ErrCorrupt, k)
			}
			n := binary.BigEndian.Uint64(k[1:])
			var rch, c cid.Cid
			err := it.Item().Value(func(v []byte) error {
				var err error
				rch, c, err = decodeArrival(v)
				return err
			})
			if err != nil {
				return err
			}
			if ch.Defined() && !rch.Equals(ch) {
				next = n
				continue
			}
			rec, err := s.getRecord(txn, c)
			if err != nil {
				return fmt.Errorf("arrival %d: %w", n, err)
			}
			if len(recs) > 0 && bytes+len(rec.Envelope) > maxBytes {
				return nil
			}
			bytes += len(rec.Envelope)
			recs = append(recs, Arrived{Seq: n, Record: rec})
			next = n
		}
		return nil
	})
	if err != nil {
		return nil, after, fmt.Errorf("store arrivals after %d: %w", after, err)
	}
	return recs, next, nil
}

// initArrivals finds the last arrival number, and numbers the records of
// a store written before the index existed: each channel's, author by
// author in chain order.
func (s *Store) initArrivals() error {
	done := false
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{pArrivalDone})
		if err == nil {
			done = true
			if err := item.Value(func(v []byte) error {
				if len(v) == 8 {
					s.epoch = hex.EncodeToString(v)
				}
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pArrival}, Reverse: true})
		defer it.Close()
		it.Seek(arrivalKey(^uint64(0)))
		if it.Valid() {
			k := it.Item().Key()
			if len(k) != 9 {
				return fmt.Errorf("%w: arrival key %x", ErrCorrupt, k)
			}
			s.arrival = binary.BigEndian.Uint64(k[1:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if done && s.epoch == "" {
		// Numbered before epochs: the numbers stand, under a new epoch.
		epoch, err := newEpoch()
		if err != nil {
			return err
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte{pArrivalDone}, epoch) }); err != nil {
			return err
		}
		s.epoch = hex.EncodeToString(epoch)
	}
	if done {
		return nil
	}
	// A numbering cut short by a crash starts again from scratch.
	if err := s.db.DropPrefix([]byte{pArrival}); err != nil {
		return err
	}
	s.arrival = 0
	epoch, err := newEpoch()
	if err != nil {
		return err
	}
	type entry struct{ ch, c cid.Cid }
	var batch []entry
	flush := func(last bool) error {
		return s.db.Update(func(txn *badger.Txn) error {
			for _, e := range batch {
				s.arrival++
				if err := txn.Set(arrivalKey(s.arrival), encodeArrival(e.ch, e.c)); err != nil {
					return err
				}
			}
			batch = batch[:0]
			if last {
				return txn.Set([]byte{pArrivalDone}, epoch)
			}
			return nil
		})
	}
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pSeq}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			r := keyReader{b: it.Item().Key()[1:]}
			ch := r.cid(r.part())
			if r.err != nil {
				return r.err
			}
			var sv seqValue
			err := it.Item().Value(func(v []byte) error {
				var err error
				sv, err = decodeSeqValue(v)
				return err
			})
			if err != nil {
				return err
			}
			if batch = append(batch, entry{ch, sv.cid}); len(batch) == 1000 {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("numbering the records' arrivals: %w", err)
	}
	if err := flush(true); err != nil {
		return fmt.Errorf("numbering the records' arrivals: %w", err)
	}
	s.epoch = hex.EncodeToString(epoch)
	return nil
}

func newEpoch() ([]byte, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("arrival epoch: %w", err)
	}
	return b, nil
}
