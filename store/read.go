package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// DefaultLimit is the page size of ByChannel and ByKind when limit is 0 or
// less.
const DefaultLimit = 100

// scanChunk is how many records ScanAuthor reads per read transaction.
const scanChunk = 256

// scanChunkBytes bounds the envelope bytes ScanEnvelopes holds at once: it
// feeds sync answers, several at a time, under the daemon's 80 MiB heap
// limit, and 256 envelopes of the largest size would be 64 MiB. 1 MiB is
// a few hundred ordinary records, or four of the largest.
const scanChunkBytes = 1 << 20

// Backlink is a reference to a record from another record.
type Backlink struct {
	// Rel is the link's relation ("fulfils", "supersedes", ...).
	Rel string
	// From is the record that holds the link.
	From cid.Cid
}

// Fork is evidence that an author signed two different records for one
// place in its chain.
type Fork struct {
	// Channel is the channel of the records.
	Channel cid.Cid
	// Author is the peer that signed them.
	Author peer.ID
	// Seq is the place in the author's chain where the records conflict.
	Seq uint64
	// CIDs are the conflicting records, in CID byte order: records with seq
	// Seq (the first one stored holds the slot in every index), and any
	// record with seq Seq+1 whose prev names a record other than the one
	// held at Seq.
	CIDs []cid.Cid
}

// Get returns the record with CID c, or an error matching ErrNotFound.
func (s *Store) Get(c cid.Cid) (*protocol.Signed, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store get %s: %w", c, err)
	}
	defer s.leave()
	var rec *protocol.Signed
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		rec, err = s.getRecord(txn, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store get %s: %w", c, err)
	}
	return rec, nil
}

// Has reports whether a record with CID c is stored, including one kept
// only as fork evidence.
func (s *Store) Has(c cid.Cid) (bool, error) {
	if err := s.enter(); err != nil {
		return false, fmt.Errorf("store has %s: %w", c, err)
	}
	defer s.leave()
	if !c.Defined() {
		return false, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(recordKey(c))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store has %s: %w", c, err)
	}
	return true, nil
}

// ByChannel lists the records of channel ch newest first (by record time,
// ties in CID order), limit at a time (DefaultLimit when limit <= 0). Pass
// the empty cursor for the first page and the returned next for the
// following ones; next is empty after the last page. Records stored while
// paging show up on a later call from the start, never twice in one walk.
func (s *Store) ByChannel(ch cid.Cid, limit int, cursor string) ([]*protocol.Signed, string, error) {
	recs, next, err := s.list(channelPrefix(ch), ch.Bytes(), limit, cursor)
	if err != nil {
		return nil, "", fmt.Errorf("store by channel %s: %w", ch, err)
	}
	return recs, next, nil
}

// ByKind lists the records of a kind across channels, newest first, paged
// as ByChannel.
func (s *Store) ByKind(kind string, limit int, cursor string) ([]*protocol.Signed, string, error) {
	recs, next, err := s.list(kindPrefix(kind), []byte(kind), limit, cursor)
	if err != nil {
		return nil, "", fmt.Errorf("store by kind %q: %w", kind, err)
	}
	return recs, next, nil
}

// ScanKind calls fn with every record of a kind across channels, newest
// first, a page of 1,000 at a time; it stops at fn's first error.
func (s *Store) ScanKind(kind string, fn func(*protocol.Signed) error) error {
	cursor := ""
	for {
		page, next, err := s.ByKind(kind, 1000, cursor)
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// list pages through the entries under prefix, whose keys end in
// newest(8) cid.
func (s *Store) list(prefix, part []byte, limit int, cursor string) ([]*protocol.Signed, string, error) {
	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.leave()
	if err := checkPart("key", part); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	seek := prefix
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		seek = append(append([]byte(nil), prefix...), after...)
	}

	var recs []*protocol.Signed
	var next string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		var last []byte
		for it.Seek(seek); it.Valid(); it.Next() {
			key := it.Item().Key()
			if cursor != "" && bytes.Equal(key, seek) {
				continue
			}
			if len(recs) == limit {
				next = base64.RawURLEncoding.EncodeToString(last)
				return nil
			}
			suffix := key[len(prefix):]
			if len(suffix) < 8 {
				return fmt.Errorf("%w: short listing key %x", ErrCorrupt, key)
			}
			c, err := castCID(suffix[8:])
			if err != nil {
				return err
			}
			rec, err := s.getRecord(txn, c)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
			last = append(last[:0], suffix...)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return recs, next, nil
}

// decodeCursor checks a cursor and returns the key suffix it names.
func decodeCursor(cursor string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 8 {
		return nil, fmt.Errorf("%w: %q", ErrBadCursor, cursor)
	}
	if _, err := castCID(b[8:]); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadCursor, cursor)
	}
	return b, nil
}

// ByAuthor returns the records of author in channel ch with seq from from
// to to inclusive (to == 0: no upper bound), in seq order. Seqs not stored
// are skipped; for a seq with fork evidence, the first record stored is
// returned.
func (s *Store) ByAuthor(ch cid.Cid, author peer.ID, from, to uint64) ([]*protocol.Signed, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store by author %s %s: %w", ch, author, err)
	}
	defer s.leave()
	var recs []*protocol.Signed
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := s.scanSeq(txn, ch, author, from, to, 0, func(r *protocol.Signed) {
			recs = append(recs, r)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store by author %s %s: %w", ch, author, err)
	}
	return recs, nil
}

// ScanAuthor calls fn with each record of author in channel ch from seq from
// on, in seq order, as ByAuthor does, without holding them all in memory or
// keeping a database transaction open while fn runs. An error from fn stops
// the scan and is returned as it is. fn must not call Close.
func (s *Store) ScanAuthor(ch cid.Cid, author peer.ID, from uint64, fn func(*protocol.Signed) error) error {
	if err := s.enter(); err != nil {
		return fmt.Errorf("store scan author %s %s: %w", ch, author, err)
	}
	defer s.leave()
	for {
		var chunk []*protocol.Signed
		var last uint64
		err := s.db.View(func(txn *badger.Txn) error {
			var err error
			last, err = s.scanSeq(txn, ch, author, from, 0, scanChunk, func(r *protocol.Signed) {
				chunk = append(chunk, r)
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("store scan author %s %s: %w", ch, author, err)
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(chunk) < scanChunk || last == ^uint64(0) {
			return nil
		}
		from = last + 1
	}
}

// ScanEnvelopes calls fn with the CID and envelope of each record of
// author in channel ch from seq from on, in seq order, as ScanAuthor does,
// without decoding them: for sending records on, where the receiver checks
// them. Each envelope is checked to hash to its CID. The envelope is fn's
// to keep.
func (s *Store) ScanEnvelopes(ch cid.Cid, author peer.ID, from uint64, fn func(c cid.Cid, env []byte) error) error {
	if err := s.enter(); err != nil {
		return fmt.Errorf("store scan envelopes %s %s: %w", ch, author, err)
	}
	defer s.leave()
	type rec struct {
		c   cid.Cid
		env []byte
	}
	chunk := make([]rec, 0, scanChunk)
	for {
		chunk = chunk[:0]
		var last uint64
		full := false
		err := s.db.View(func(txn *badger.Txn) error {
			var err error
			size := 0
			last, err = scanSeqCIDs(txn, ch, author, from, 0, scanChunk, func(c cid.Cid) error {
				item, err := txn.Get(recordKey(c))
				if err != nil {
					return fmt.Errorf("%w: record %s: %v", ErrCorrupt, c, err)
				}
				env, err := s.envelope(item)
				if err != nil {
					return err
				}
				if got, err := protocol.EnvelopeCID(env); err != nil || !got.Equals(c) {
					return fmt.Errorf("%w: record %s: envelope does not hash to its key", ErrCorrupt, c)
				}
				chunk = append(chunk, rec{c, env})
				if size += len(env); size >= scanChunkBytes {
					full = true
					return errStopAfter
				}
				return nil
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("store scan envelopes %s %s: %w", ch, author, err)
		}
		for _, r := range chunk {
			if err := fn(r.c, r.env); err != nil {
				return err
			}
		}
		if (!full && len(chunk) < scanChunk) || last == ^uint64(0) {
			return nil
		}
		from = last + 1
	}
}

// errStopAfter, returned by a scanSeqCIDs callback, ends the scan after
// that record, which counts as the last one.
var errStopAfter = errors.New("stop after this record")

// scanSeqCIDs calls fn with the CIDs under (ch, author) with seq in
// [from, to] (to == 0: no bound), at most limit of them (limit == 0: no
// bound), and returns the seq of the last one.
func scanSeqCIDs(txn *badger.Txn, ch cid.Cid, author peer.ID, from, to uint64, limit int, fn func(cid.Cid) error) (uint64, error) {
	if err := checkPart("channel", ch.Bytes()); err != nil {
		return 0, err
	}
	if err := checkPart("author", []byte(author)); err != nil {
		return 0, err
	}
	from = max(from, 1)
	prefix := seqPrefix(ch, author)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var last uint64
	n := 0
	for it.Seek(seqKey(ch, author, from)); it.Valid(); it.Next() {
		item := it.Item()
		r := keyReader{b: item.Key()[len(prefix):]}
		seq := r.u64()
		if r.err != nil || len(r.b) != 0 {
			return 0, fmt.Errorf("%w: malformed key %x", ErrCorrupt, item.Key())
		}
		if to != 0 && seq > to {
			break
		}
		var sv seqValue
		err := item.Value(func(v []byte) error {
			var err error
			sv, err = decodeSeqValue(v)
			return err
		})
		if err != nil {
			return 0, err
		}
		if err := fn(sv.cid); err != nil {
			if errors.Is(err, errStopAfter) {
				return seq, nil
			}
			return 0, err
		}
		last = seq
		if n++; limit > 0 && n == limit {
			break
		}
	}
	return last, nil
}

// scanSeq calls fn with the records under (ch, author) with seq in
// [from, to] (to == 0: no bound), at most limit of them (limit == 0: no bound),
// and returns the seq of the last one.
func (s *Store) scanSeq(txn *badger.Txn, ch cid.Cid, author peer.ID, from, to uint64, limit int, fn func(*protocol.Signed)) (uint64, error) {
	return scanSeqCIDs(txn, ch, author, from, to, limit, func(c cid.Cid) error {
		rec, err := s.getRecord(txn, c)
		if err != nil {
			return err
		}
		fn(rec)
		return nil
	})
}

// Backlinks returns the links to target from the records stored, ordered by
// rel, then by source CID.
func (s *Store) Backlinks(target cid.Cid) ([]Backlink, error) {
	bl, err := s.BacklinksOf([]cid.Cid{target})
	if err != nil {
		return nil, err
	}
	return bl[target], nil
}

// BacklinksOf is Backlinks for several targets, with one read transaction
// and one iterator: a batch of records just stored asks once whether
// anything held links to them. Targets without backlinks are left out.
func (s *Store) BacklinksOf(targets []cid.Cid) (map[cid.Cid][]Backlink, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store backlinks: %w", err)
	}
	defer s.leave()
	out := map[cid.Cid][]Backlink{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pBacklink}})
		defer it.Close()
		for _, target := range targets {
			if err := checkPart("target", target.Bytes()); err != nil {
				return err
			}
			prefix := backlinkPrefix(target)
			for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
				r := keyReader{b: it.Item().Key()[len(prefix):]}
				rel := string(r.part())
				from := r.cid(r.rest())
				if r.err != nil {
					return r.err
				}
				out[target] = append(out[target], Backlink{Rel: rel, From: from})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store backlinks: %w", err)
	}
	return out, nil
}

// Heads returns, for every author with a record in channel ch, the highest
// seq up to which its chain is stored complete and unbroken from seq 1 (0
// when seq 1 is missing). An unknown channel gives an empty map.
func (s *Store) Heads(ch cid.Cid) (map[peer.ID]uint64, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store heads %s: %w", ch, err)
	}
	defer s.leave()
	heads := make(map[peer.ID]uint64)
	err := s.db.View(func(txn *badger.Txn) error {
		if err := checkPart("channel", ch.Bytes()); err != nil {
			return err
		}
		prefix := headPrefix(ch)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			r := keyReader{b: item.Key()[len(prefix):]}
			author := r.peer(r.part())
			if r.err == nil && len(r.b) != 0 {
				r.fail()
			}
			if r.err != nil {
				return r.err
			}
			var head uint64
			err := item.Value(func(v []byte) error {
				var err error
				head, err = decodeU64(v)
				return err
			})
			if err != nil {
				return err
			}
			heads[author] = head
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store heads %s: %w", ch, err)
	}
	return heads, nil
}

// Head returns author's head in channel ch, as Heads does; 0 when the author
// has no record there.
func (s *Store) Head(ch cid.Cid, author peer.ID) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, fmt.Errorf("store head %s %s: %w", ch, author, err)
	}
	defer s.leave()
	if err := checkPart("channel", ch.Bytes()); err != nil {
		return 0, fmt.Errorf("store head %s %s: %w", ch, author, err)
	}
	if err := checkPart("author", []byte(author)); err != nil {
		return 0, fmt.Errorf("store head %s %s: %w", ch, author, err)
	}
	hk := headKey(ch, author)
	s.headsMu.Lock()
	head, ok := s.heads[string(hk)]
	s.headsMu.Unlock()
	if ok {
		return head, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		head, _, err = getU64(txn, hk)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store head %s %s: %w", ch, author, err)
	}
	return s.noteHead(hk, head), nil
}

// noteHead records in the mirror that the head under key hk is at least
// head, and returns the mirror's value.
func (s *Store) noteHead(hk []byte, head uint64) uint64 {
	s.headsMu.Lock()
	defer s.headsMu.Unlock()
	head = max(head, s.heads[string(hk)])
	s.heads[string(hk)] = head
	return head
}

// Forks returns the fork evidence held for channel ch, by author, then seq.
func (s *Store) Forks(ch cid.Cid) ([]Fork, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store forks %s: %w", ch, err)
	}
	defer s.leave()
	var out []Fork
	err := s.db.View(func(txn *badger.Txn) error {
		if err := checkPart("channel", ch.Bytes()); err != nil {
			return err
		}
		prefix := forkPrefix(ch)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			r := keyReader{b: it.Item().Key()[len(prefix):]}
			author := r.peer(r.part())
			seq := r.u64()
			c := r.cid(r.rest())
			if r.err != nil {
				return r.err
			}
			if n := len(out); n > 0 && out[n-1].Author == author && out[n-1].Seq == seq {
				out[n-1].CIDs = append(out[n-1].CIDs, c)
				continue
			}
			out = append(out, Fork{Channel: ch, Author: author, Seq: seq, CIDs: []cid.Cid{c}})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store forks %s: %w", ch, err)
	}
	return out, nil
}

// Channels returns every channel with at least one record stored (fork
// evidence aside), in CID byte order.
func (s *Store) Channels() ([]cid.Cid, error) {
	if err := s.enter(); err != nil {
		return nil, fmt.Errorf("store channels: %w", err)
	}
	defer s.leave()
	var out []cid.Cid
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{pHead}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		it.Rewind()
		for it.Valid() {
			key := it.Item().Key()
			r := keyReader{b: key[1:]}
			part := r.part()
			ch := r.cid(part)
			if r.err != nil {
				return r.err
			}
			out = append(out, ch)
			end := prefixEnd(key[:2+len(part)])
			if end == nil {
				break
			}
			it.Seek(end)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store channels: %w", err)
	}
	return out, nil
}

// envelope returns the envelope of a record's item.
func (s *Store) envelope(item *badger.Item) ([]byte, error) {
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if _, ok := parsePointer(v); ok {
		return nil, fmt.Errorf("%w: record %x points into a record log this store no longer has", ErrCorrupt, item.Key())
	}
	return v, nil
}

// getRecord reads and decodes the record with CID c.
func (s *Store) getRecord(txn *badger.Txn, c cid.Cid) (*protocol.Signed, error) {
	if !c.Defined() {
		return nil, ErrNotFound
	}
	item, err := txn.Get(recordKey(c))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	env, err := s.envelope(item)
	if err != nil {
		return nil, err
	}
	return load(c, env)
}

// load decodes an envelope read from the database and checks that it is the
// record the key names. Decoding is protocol's; a panic there on damaged
// bytes becomes ErrCorrupt rather than taking the node down.
func load(c cid.Cid, env []byte) (rec *protocol.Signed, err error) {
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: record %s: decoder panic: %v", ErrCorrupt, c, p)
		}
	}()
	rec, err = protocol.Load(env)
	if err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrCorrupt, c, err)
	}
	if rec == nil || !rec.CID.Equals(c) {
		return nil, fmt.Errorf("%w: record stored under %s has another CID", ErrCorrupt, c)
	}
	return rec, nil
}
