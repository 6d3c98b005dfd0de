package store

// Moving a store off the record log.
//
// Until December 2026 a store without encryption kept its envelopes in a
// record log beside Badger (records-NNNNNN.log and records.checkpoint in
// the data directory), in the manner of WiscKey, and Badger, whose writes
// were not synced, held pointers into it (layout 2). That gave two storage
// paths, plain and encrypted, and made durability depend on syncing
// Badger's own files by their names. Now every store keeps everything in
// Badger, whose synced writes (group commit) make a record durable before
// Put returns; docs/design.md, "Store", gives the measurements behind the
// choice. Opening a store that still has a record log moves it:
//
//  1. the records the log holds after its checkpoint that Badger lost (the
//     machine went down before Badger's unsynced writes reached the disk)
//     are indexed again, as the log's replay did;
//  2. every pointer into the log is replaced by the envelope it points at,
//     checked against its CID, in synced transactions; the last one also
//     writes the layout version 1 (every envelope in Badger) and the
//     'M' marker;
//  3. the log's files are deleted, the checkpoint last.
//
// A crash at any point leaves a store that the next open moves again from
// where it was: until 'M' is written the checkpoint and every segment are
// still there, and with 'M' written only the deletion is left to do.
//
// The log's format (for reading only):
//
//	segment records-NNNNNN.log: entries, integers little-endian,
//	  magic(4) segment(8) lsn(8) length(4) crc32c(4) behind(4) payload(length)
//	  payload: records, each cid-length(1) cid envelope-length(4) envelope
//	records.checkpoint: magic(8) segment(8) offset(8) next-lsn(8) salt(4) crc32c(4)
//
// The CRC covers segment, lsn, length, behind and payload and starts from
// the salt. behind says how many entries before this one were not yet
// known durable when it was written: a whole entry after the end of the
// readable log that says the entry at that end was durable means the log
// was damaged, not torn by a crash, and the store is refused rather than
// opened without the records after the damage.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

const (
	logEntryHead    = 32
	logEntryTag     = 0x45_4c_53_53 // "SSLE"
	checkpointName  = "records.checkpoint"
	maxEntryPayload = 4 << 20
	pointerSize     = 1 + 8 + 8 + 4 // Badger's value for a record in the log
	pMigrated       = 'M'           // the envelopes are out of the record log
)

var (
	checkpointMagic = [8]byte{'S', 'S', 'C', 'K', 'P', 'T', '0', '2'}
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
)

func segmentName(seg uint64) string { return fmt.Sprintf("records-%06d.log", seg) }

// location is where an envelope is in the log.
type location struct {
	seg uint64
	off uint64
	len uint32
}

// parsePointer reads a pointer value (a zero byte, which no envelope
// starts with, and the location); ok is false for an envelope.
func parsePointer(v []byte) (l location, ok bool) {
	if len(v) != pointerSize || v[0] != 0 {
		return location{}, false
	}
	return location{binary.LittleEndian.Uint64(v[1:]), binary.LittleEndian.Uint64(v[9:]), binary.LittleEndian.Uint32(v[17:])}, true
}

// position is a place in the log: the next entry's segment, offset and lsn.
type position struct {
	seg, off, lsn uint64
}

// logRecord is a record read back from the log, with where it is.
type logRecord struct {
	cid []byte
	env []byte
	loc location
}

// logEntry is an entry read back.
type logEntry struct {
	seg, lsn uint64
	behind   uint32
	recs     []logRecord
	size     int
}

// readCheckpoint reads the checkpoint; fs.ErrNotExist when there is none.
func readCheckpoint(dir string) (position, uint32, error) {
	path := filepath.Join(dir, checkpointName)
	b, err := os.ReadFile(path)
	if err != nil {
		return position{}, 0, err
	}
	if len(b) != 40 || [8]byte(b[:8]) != checkpointMagic || crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return position{}, 0, fmt.Errorf("%w: record log checkpoint %s is damaged (%d bytes); it was written whole or not at all, so this is not a crash's doing: restore the node's data from a backup", ErrCorrupt, path, len(b))
	}
	p := position{binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])}
	if p.seg == 0 || p.lsn == 0 {
		return position{}, 0, fmt.Errorf("%w: record log checkpoint %s names segment %d, lsn %d: restore the node's data from a backup", ErrCorrupt, path, p.seg, p.lsn)
	}
	return p, binary.LittleEndian.Uint32(b[32:]), nil
}

// entryCRC is the CRC of an entry's header fields and payload.
func entryCRC(salt uint32, b []byte, n int) uint32 {
	crc := crc32.Update(salt, castagnoli, b[4:24])
	crc = crc32.Update(crc, castagnoli, b[28:32])
	return crc32.Update(crc, castagnoli, b[logEntryHead:n])
}

// parseLogEntry reads the entry at the start of b. ok is false when there
// is none: zeros, a torn or damaged entry, or garbage.
func parseLogEntry(b []byte, salt uint32) (e logEntry, ok bool) {
	if len(b) < logEntryHead || binary.LittleEndian.Uint32(b) != logEntryTag {
		return e, false
	}
	length := binary.LittleEndian.Uint32(b[20:])
	if uint64(length) > uint64(len(b)-logEntryHead) {
		return e, false
	}
	n := logEntryHead + int(length)
	if entryCRC(salt, b, n) != binary.LittleEndian.Uint32(b[24:]) {
		return e, false
	}
	e = logEntry{seg: binary.LittleEndian.Uint64(b[4:]), lsn: binary.LittleEndian.Uint64(b[12:]), behind: binary.LittleEndian.Uint32(b[28:]), size: n}
	p := b[logEntryHead:n]
	off := uint64(logEntryHead)
	for len(p) > 0 {
		cl := int(p[0])
		if cl == 0 || len(p) < 1+cl+4 {
			return logEntry{}, false
		}
		c := p[1 : 1+cl]
		el := binary.LittleEndian.Uint32(p[1+cl:])
		p = p[1+cl+4:]
		off += uint64(1 + cl + 4)
		if el == 0 || uint64(el) > uint64(len(p)) {
			return logEntry{}, false
		}
		e.recs = append(e.recs, logRecord{cid: c, env: p[:el], loc: location{len: el, off: off}})
		p = p[el:]
		off += uint64(el)
	}
	return e, len(e.recs) > 0
}

// scanSegment reads the entries of segment file f from pos on and returns
// their records and the position after the last.
func scanSegment(f *os.File, pos position, salt uint32) ([]logRecord, position, error) {
	var out []logRecord
	head := make([]byte, logEntryHead)
	for {
		if _, err := f.ReadAt(head, int64(pos.off)); err != nil {
			if errors.Is(err, io.EOF) {
				return out, pos, nil
			}
			return nil, pos, fmt.Errorf("record log %s: %w", segmentName(pos.seg), err)
		}
		if binary.LittleEndian.Uint32(head) != logEntryTag {
			return out, pos, nil
		}
		length := binary.LittleEndian.Uint32(head[20:])
		if length > maxEntryPayload {
			return out, pos, nil
		}
		buf := make([]byte, logEntryHead+int(length))
		if _, err := f.ReadAt(buf, int64(pos.off)); err != nil {
			if errors.Is(err, io.EOF) {
				return out, pos, nil
			}
			return nil, pos, fmt.Errorf("record log %s: %w", segmentName(pos.seg), err)
		}
		e, ok := parseLogEntry(buf, salt)
		if !ok || e.seg != pos.seg || e.lsn != pos.lsn {
			return out, pos, nil
		}
		for _, r := range e.recs {
			r.loc.seg, r.loc.off = pos.seg, pos.off+r.loc.off
			out = append(out, r)
		}
		pos.off += uint64(e.size)
		pos.lsn++
	}
}

// scanLog reads the log from the checkpoint's position to its end.
func scanLog(dir string, start position, salt uint32) ([]logRecord, position, error) {
	var out []logRecord
	pos := start
	for seg := start.seg; ; seg++ {
		f, err := os.Open(filepath.Join(dir, segmentName(seg)))
		if errors.Is(err, fs.ErrNotExist) {
			if seg == start.seg && (seg != 1 || start.off != 0) {
				return nil, pos, fmt.Errorf("%w: record log: the checkpoint names %s, which is missing from %s. Restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners", ErrCorrupt, segmentName(seg), dir)
			}
			return out, pos, nil
		}
		if err != nil {
			return nil, pos, fmt.Errorf("record log: %w", err)
		}
		from := pos
		if seg != start.seg {
			// The writer moved to the next segment when an entry did
			// not fit; the log goes on there if that segment starts
			// with the entry that follows.
			from = position{seg, 0, pos.lsn}
		}
		recs, end, err := scanSegment(f, from, salt)
		f.Close()
		if err != nil {
			return nil, pos, err
		}
		if seg != start.seg && end == from {
			return out, pos, nil
		}
		out = append(out, recs...)
		pos = end
	}
}

// damagedAfter reports whether a whole entry after end, in end's segment
// or a later one, says that the entry at end was durable.
func damagedAfter(dir string, end position, salt uint32) (bool, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+logEntryHead)
	for seg, from := end.seg, int64(end.off); ; seg, from = seg+1, 0 {
		f, err := os.Open(filepath.Join(dir, segmentName(seg)))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("record log: %w", err)
		}
		for off := from; ; off += chunk {
			n, err := f.ReadAt(buf, off)
			if err != nil && !errors.Is(err, io.EOF) {
				f.Close()
				return false, fmt.Errorf("record log: %w", err)
			}
			b := buf[:n]
			for i := 0; i+logEntryHead <= len(b) && i < chunk; i++ {
				if binary.LittleEndian.Uint32(b[i:]) != logEntryTag {
					continue
				}
				length := binary.LittleEndian.Uint32(b[i+20:])
				if length > maxEntryPayload {
					continue
				}
				e := make([]byte, logEntryHead+int(length))
				if _, err := f.ReadAt(e, off+int64(i)); err != nil {
					continue
				}
				if ent, ok := parseLogEntry(e, salt); ok && ent.seg == seg && ent.lsn > end.lsn && ent.lsn-uint64(ent.behind) > end.lsn {
					f.Close()
					return true, nil
				}
			}
			if n < len(buf) {
				break
			}
		}
		f.Close()
	}
}

// readAt reads the envelope at loc.
func readAt(dir string, files map[uint64]*os.File, loc location) ([]byte, error) {
	if loc.len == 0 || loc.len > maxEntryPayload {
		return nil, fmt.Errorf("%w: record log pointer of %d bytes", ErrCorrupt, loc.len)
	}
	f := files[loc.seg]
	if f == nil {
		var err error
		if f, err = os.Open(filepath.Join(dir, segmentName(loc.seg))); err != nil {
			return nil, fmt.Errorf("%w: record log: %v", ErrCorrupt, err)
		}
		files[loc.seg] = f
	}
	b := make([]byte, loc.len)
	if _, err := f.ReadAt(b, int64(loc.off)); err != nil {
		return nil, fmt.Errorf("%w: record log %s at %d: %v", ErrCorrupt, segmentName(loc.seg), loc.off, err)
	}
	return b, nil
}

// migrateLog moves a store's envelopes out of its record log, when it has
// one (see above).
func (s *Store) migrateLog() error {
	migrated, layout := false, byte(0)
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte{pMigrated}); err == nil {
			migrated = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		item, err := txn.Get([]byte{pVersion})
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			layout = v[0] // init checked it
			return nil
		})
	})
	if err != nil {
		return err
	}
	start, salt, err := readCheckpoint(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if layout == layoutLog && !migrated {
			return fmt.Errorf("%w: the store keeps its envelopes in a record log, and %s is missing from %s. Put the record log's files (%s, records-*.log) back, or restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners",
				ErrCorrupt, checkpointName, s.dir, checkpointName)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !migrated {
		began := time.Now()
		recs, end, err := scanLog(s.dir, start, salt)
		if err != nil {
			return err
		}
		if bad, err := damagedAfter(s.dir, end, salt); err != nil {
			return err
		} else if bad {
			return fmt.Errorf("%w: record log %s is damaged at offset %d: the entry there does not check out, and an entry after it says it was already on the disk. Restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners",
				ErrCorrupt, filepath.Join(s.dir, segmentName(end.seg)), end.off)
		}
		reindexed, err := s.reindex(recs)
		if err != nil {
			return err
		}
		moved, err := s.inlineEnvelopes()
		if err != nil {
			return err
		}
		s.log.Warn("store: envelopes moved from the record log into the database; the log is removed",
			"moved", moved, "indexed_again", reindexed, "took", time.Since(began).Round(time.Millisecond))
	}
	// What is left is deleting the log, segments first, so that a
	// checkpoint without segments can only mean this step was cut short.
	segs, err := filepath.Glob(filepath.Join(s.dir, "records-*.log"))
	if err != nil {
		return err
	}
	news, _ := filepath.Glob(filepath.Join(s.dir, "records*.new"))
	for _, p := range append(segs, news...) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the old record log: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(s.dir, checkpointName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the old record log: %w", err)
	}
	return syncDir(s.dir)
}

// reindex indexes the records of the log that Badger does not hold, in log
// order (the order their batches were synced). A record that passed every
// check when it was written and fails one now is not dropped: the store
// acknowledged it.
func (s *Store) reindex(recs []logRecord) (int, error) {
	refuse := func(what string, err error) error {
		return fmt.Errorf("%w: record log: %s: %v; the store acknowledged it and will not drop it: open the store with the version of sangsaeng that wrote it", ErrCorrupt, what, err)
	}
	stored := 0
	items := make([]putItem, 0, maxReplayBatch)
	flush := func() error {
		results := make([]Result, len(items))
		for done := 0; done < len(items); {
			n, err := s.commit(items[done:], results[done:])
			if err != nil {
				return fmt.Errorf("record log replay: %w", err)
			}
			done += n
		}
		stored += len(items)
		items = items[:0]
		return nil
	}
	for _, r := range recs {
		c, err := cid.Cast(r.cid)
		if err != nil {
			return stored, refuse(fmt.Sprintf("a record at %s offset %d has a bad CID", segmentName(r.loc.seg), r.loc.off), err)
		}
		held, err := s.Has(c)
		if err != nil {
			return stored, fmt.Errorf("record log replay %s: %w", c, err)
		}
		if held {
			continue
		}
		rec, err := protocol.Open(r.env)
		if err == nil && !rec.CID.Equals(c) {
			err = fmt.Errorf("the envelope is record %s", rec.CID)
		}
		if err != nil {
			return stored, refuse("record "+c.String()+" does not open", err)
		}
		it, err := prepare(rec)
		if err != nil {
			return stored, refuse("record "+c.String()+" is refused", err)
		}
		if items = append(items, it); len(items) == maxReplayBatch {
			if err := flush(); err != nil {
				return stored, err
			}
		}
	}
	return stored, flush()
}

// maxReplayBatch bounds the records one replay transaction takes.
const maxReplayBatch = 1000

// inlineChunk is how many pointers one transaction of inlineEnvelopes
// replaces at most; inlineFault, when set (by tests), is called before
// each chunk is committed and stops the move with its error.
var (
	inlineChunk = 1000
	inlineFault func(chunk int) error
)

// inlineEnvelopes replaces every pointer into the log by its envelope,
// a chunk of records per synced transaction, and then marks the store as
// moved.
func (s *Store) inlineEnvelopes() (int, error) {
	files := map[uint64]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	moved, chunks := 0, 0
	seek := []byte{pRecord}
	for {
		type ptr struct {
			key []byte
			loc location
		}
		var chunk []ptr
		var last []byte
		final := true
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRecord}})
			defer it.Close()
			for it.Seek(seek); it.Valid(); it.Next() {
				if len(chunk) == inlineChunk {
					final = false
					break
				}
				item := it.Item()
				last = item.KeyCopy(last[:0])
				if item.ValueSize() != pointerSize {
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if loc, ok := parsePointer(v); ok {
					chunk = append(chunk, ptr{item.KeyCopy(nil), loc})
				}
			}
			return nil
		})
		if err != nil {
			return moved, err
		}
		txn := s.db.NewTransaction(true)
		for _, p := range chunk {
			env, err := readAt(s.dir, files, p.loc)
			if err != nil {
				txn.Discard()
				return moved, err
			}
			c, err := castCID(p.key[1:])
			if err != nil {
				txn.Discard()
				return moved, err
			}
			if _, err := load(c, env); err != nil {
				txn.Discard()
				return moved, fmt.Errorf("record log: the envelope of %s: %w. Nothing was deleted. Restore the data directory from a backup, or move it aside and start the node on an empty one: its partners give it its channels' records back", c, err)
			}
			err = txn.Set(p.key, env)
			if errors.Is(err, badger.ErrTxnTooBig) {
				if err = txn.Commit(); err == nil {
					txn = s.db.NewTransaction(true)
					err = txn.Set(p.key, env)
				}
			}
			if err != nil {
				txn.Discard()
				return moved, err
			}
			moved++
		}
		if inlineFault != nil {
			if err := inlineFault(chunks); err != nil {
				txn.Discard()
				return moved, err
			}
		}
		chunks++
		if final {
			// The marker goes with the last chunk.
			if err := txn.Set([]byte{pVersion}, []byte{layoutInline}); err != nil {
				txn.Discard()
				return moved, err
			}
			if err := txn.Set([]byte{pMigrated}, nil); err != nil {
				txn.Discard()
				return moved, err
			}
			return moved, txn.Commit()
		}
		if err := txn.Commit(); err != nil {
			return moved, err
		}
		seek = append(last, 0) // the key after last
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
