package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The record log holds the envelopes of a store without encryption, and is
// what makes a record durable.
//
// Badger's own synced write costs two msyncs, of its value log and of its
// memtable's log, each on a sparse file whose new blocks the file system
// must allocate and journal; and it reads values through memory maps, so
// every envelope written or read stays in the process's resident memory.
// So envelopes live in the record log instead, in the manner of WiscKey:
// append-only segment files, written once with zeros when created, to
// which PutBatch appends a batch's envelopes with one fdatasync before it
// writes Badger. Badger holds the indexes, each record's entry pointing at
// its envelope in the log, and its writes are not synced. Envelopes are
// read with pread, through the page cache.
//
// A checkpoint (every segment's worth of records, and on Close) makes
// Badger's writes durable and records the log position up to which Badger
// holds every record. Opening the store replays the log from there: a
// record Badger lost (the machine went down before the page cache reached
// the disk) is indexed again. A flusher starts the writeback of Badger's
// files every flushInterval so that a checkpoint finds little left to
// write.
//
// Segment files are records-NNNNNN.log, of LogSegmentSize bytes. Each
// holds entries, integers little-endian:
//
//	magic(4) segment(8) lsn(8) length(4) crc32c(4) behind(4) payload(length)
//	payload: records, each cid-length(1) cid envelope-length(4) envelope
//
// The CRC covers segment, lsn, length, behind and payload, and starts from
// the log's salt, a random number kept in the checkpoint, so that no
// record's bytes can pass for an entry. behind says how many entries
// before this one were not yet known durable when it was written. Entries
// never span segments, and lsns follow each other. A replay stops at the
// first entry that does not check out or does not follow: if a whole
// entry after it says that entry was durable, the log was damaged, not
// torn by a crash, and it is refused.
// records.checkpoint holds the checkpoint: magic(8) segment(8) offset(8)
// next-lsn(8) salt(4) crc32c(4).
const (
	logEntryHead   = 32
	logEntryTag    = 0x45_4c_53_53 // "SSLE"
	checkpointName = "records.checkpoint"
)

var (
	checkpointMagic = [8]byte{'S', 'S', 'C', 'K', 'P', 'T', '0', '2'}
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
)

// flushInterval is how often the flusher starts the writeback of Badger's
// files while records are being written.
const flushInterval = 200 * time.Millisecond

// logRecord is one record of a log entry.
type logRecord struct {
	cid []byte
	env []byte
}

// recordSize is what a record takes in an entry's payload.
func recordSize(r logRecord) int64 { return int64(1 + len(r.cid) + 4 + len(r.env)) }

// location is where an envelope is in the log.
type location struct {
	seg uint64
	off uint64
	len uint32
}

// Badger's value for a record in the log: a zero byte (an envelope, which
// is a protobuf message, starts with its first field's tag, never 0) and
// the location.
const pointerSize = 1 + 8 + 8 + 4

func (l location) pointer() []byte {
	b := make([]byte, 1, pointerSize)
	b = binary.LittleEndian.AppendUint64(b, l.seg)
	b = binary.LittleEndian.AppendUint64(b, l.off)
	return binary.LittleEndian.AppendUint32(b, l.len)
}

// parsePointer reads a pointer value; ok is false for an envelope.
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

// checkpointState is what the checkpoint file holds.
type checkpointState struct {
	position
	salt uint32
}

// replayRecord is a record read back from the log after the checkpoint.
type replayRecord struct {
	logRecord
	loc location
}

// maxEntryPayload bounds an entry's payload, and so what a replay reads
// at once; a batch larger than this takes several entries.
const maxEntryPayload = 4 << 20

// maxReaders bounds the segment files kept open for reading.
const maxReaders = 64

// segFile is a segment open for writing. A sync may be using it after the
// writer has moved on, so it is closed when the last user lets it go.
type segFile struct {
	f       *os.File
	size    int64
	refs    int  // syncs using it; under recordLog.mu
	retired bool // the writer has moved on
}

// prepared is the next segment, being created in the background.
type prepared struct {
	done chan struct{}
	f    *os.File
	err  error
}

// recordLog is the open log of a store.
type recordLog struct {
	dir     string
	segSize int64 // of new segments
	log     *slog.Logger
	salt    uint32 // the CRC's seed

	// apply is held for reading by a batch from its append until it is
	// in Badger; a checkpoint takes it to find a position before which
	// every record is in Badger.
	apply sync.RWMutex

	mu    sync.Mutex // the writer
	pos   position   // where the next entry goes
	cur   *segFile
	next  *prepared
	dirty []*segFile // written since the last sync
	since int64      // bytes appended since the last checkpoint
	err   error      // a failed write or sync: nothing after it is durable

	// syncMu serializes syncs (group commit): one fdatasync covers every
	// entry written before it, and its error is kept, since the kernel
	// reports a failed writeback to one caller only.
	syncMu sync.Mutex
	synced uint64 // entries with a lower lsn are durable

	readMu  sync.RWMutex
	readers map[uint64]*os.File // read-only, at most maxReaders

	written atomic.Int64 // bytes appended since the flusher last ran
	ckpt    chan struct{}
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func segmentName(seg uint64) string { return fmt.Sprintf("records-%06d.log", seg) }

// openLog opens the log in dir, creating its first segment when there is
// none, and returns the records written after the last checkpoint, in
// order. A log whose end was torn by a crash is cut back to its last
// whole entry; a log damaged elsewhere is refused with ErrCorrupt.
func openLog(dir string, segSize int64, logger *slog.Logger) (*recordLog, []replayRecord, error) {
	l := &recordLog{dir: dir, segSize: segSize, log: logger, readers: map[uint64]*os.File{},
		ckpt: make(chan struct{}, 1), stop: make(chan struct{})}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "records*.new"))
	for _, f := range leftovers {
		_ = os.Remove(f) // a segment or checkpoint being written when the node stopped
	}
	ck, err := readCheckpoint(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A new log: its salt is recorded before its first entry.
		if used, err := segmentsUsed(dir); err != nil {
			return nil, nil, err
		} else if used {
			return nil, nil, fmt.Errorf("%w: record log in %s: segments hold entries but %s is missing. Restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners", ErrCorrupt, dir, checkpointName)
		}
		var salt [4]byte
		if _, err := rand.Read(salt[:]); err != nil {
			return nil, nil, fmt.Errorf("record log: %w", err)
		}
		ck = checkpointState{position{1, 0, 1}, binary.LittleEndian.Uint32(salt[:])}
		if err := writeCheckpoint(dir, ck); err != nil {
			return nil, nil, fmt.Errorf("record log: %w", err)
		}
	} else if err != nil {
		return nil, nil, err
	}
	l.salt = ck.salt
	start := ck.position
	var out []replayRecord
	pos := start
	for seg := start.seg; ; seg++ {
		f, err := os.Open(filepath.Join(dir, segmentName(seg)))
		if errors.Is(err, fs.ErrNotExist) {
			if seg == start.seg && (seg != 1 || start.off != 0) {
				return nil, nil, fmt.Errorf("%w: record log: the checkpoint names %s, which is missing from %s. Restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners", ErrCorrupt, segmentName(seg), dir)
			}
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("record log: %w", err)
		}
		from := pos
		if seg != start.seg {
			// The writer moves to the next segment when an entry does
			// not fit; the log goes on there if that segment starts
			// with the entry that follows.
			from = position{seg, 0, pos.lsn}
		}
		recs, end, err := scanSegment(f, from, l.salt)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		if seg != start.seg && end == from {
			break
		}
		out = append(out, recs...)
		pos = end
	}
	if err := l.cutTail(pos); err != nil {
		return nil, nil, err
	}
	l.pos = pos
	f, err := os.OpenFile(filepath.Join(dir, segmentName(pos.seg)), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = l.create(pos.seg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("record log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("record log: %w", err)
	}
	l.cur = &segFile{f: f, size: st.Size()}
	// What was replayed may be only in the page cache (the process
	// stopped between a write and its sync): make it durable before
	// Badger indexes it and partners get it.
	for seg := start.seg; seg <= pos.seg; seg++ {
		if err := syncSegment(dir, seg); err != nil {
			l.cur.f.Close()
			return nil, nil, fmt.Errorf("record log: %w", err)
		}
	}
	l.synced = pos.lsn
	l.wg.Add(2)
	go l.flusher()
	go l.checkpointer()
	return l, out, nil
}

// syncSegment fdatasyncs segment seg, if it exists.
func syncSegment(dir string, seg uint64) error {
	f, err := os.OpenFile(filepath.Join(dir, segmentName(seg)), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return fdatasync(f)
}

// scanSegment reads the entries of segment file f from pos on, one at a
// time, and returns their records and the position after the last.
func scanSegment(f *os.File, pos position, salt uint32) ([]replayRecord, position, error) {
	var out []replayRecord
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
		recs, size := e.recs, e.size
		off := pos.off + logEntryHead
		for _, r := range recs {
			off += uint64(1 + len(r.cid) + 4)
			out = append(out, replayRecord{logRecord{cid: r.cid, env: r.env}, location{pos.seg, off, uint32(len(r.env))}})
			off += uint64(len(r.env))
		}
		pos.off += uint64(size)
		pos.lsn++
	}
}

// cutTail makes end the end of the log. What follows it must be what a
// crash leaves: entries written but not yet synced, torn or whole, and
// segments prepared and not written to. If a whole entry after end says
// the entry at end was already durable, the log was damaged, not torn,
// and replaying on would skip records, so it is refused. Otherwise the
// rest of end's segment is zeroed, later segments are removed, and the log
// goes on from end.
func (l *recordLog) cutTail(end position) error {
	path := filepath.Join(l.dir, segmentName(end.seg))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new log
	}
	if err != nil {
		return fmt.Errorf("record log: %w", err)
	}
	defer f.Close()
	damaged := func(where string) error {
		return fmt.Errorf("%w: record log %s is damaged at offset %d: the entry there does not check out, and %s says it was already on the disk. Restore the data directory from a backup; a node started on an empty one gets its channels' records back from its partners",
			ErrCorrupt, path, end.off, where)
	}
	tail, err := l.findEntries(f, end.seg, int64(end.off), end.lsn)
	if err != nil {
		return err
	}
	if tail.durable {
		return damaged("an entry after it")
	}
	for seg := end.seg + 1; ; seg++ {
		p := filepath.Join(l.dir, segmentName(seg))
		g, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("record log: %w", err)
		}
		r, err := l.findEntries(g, seg, 0, end.lsn)
		g.Close()
		if err != nil {
			return err
		}
		if r.durable {
			return damaged("an entry in " + segmentName(seg))
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("record log: %w", err)
		}
	}
	if tail.nonZero > int64(end.off) {
		l.log.Warn("record log: entries a crash left unsynced are cut off; none was acknowledged", "segment", segmentName(end.seg), "offset", end.off, "bytes", tail.nonZero-int64(end.off))
		zeros := make([]byte, tail.nonZero-int64(end.off))
		if _, err := f.WriteAt(zeros, int64(end.off)); err != nil {
			return fmt.Errorf("record log: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("record log: %w", err)
		}
	}
	return syncDir(l.dir)
}

// tailScan is what findEntries saw.
type tailScan struct {
	durable bool  // a whole entry says the entry at the cut was durable
	nonZero int64 // the end of the last byte that is not zero
}

// findEntries looks, from offset from of f, segment seg, on, for whole
// entries at any offset that say entry lsn cut was durable when they were
// written, and for the last byte that is not zero.
func (l *recordLog) findEntries(f *os.File, seg uint64, from int64, cut uint64) (tailScan, error) {
	var r tailScan
	const chunk = 1 << 20
	buf := make([]byte, chunk+logEntryHead)
	for off := from; ; off += chunk {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return r, fmt.Errorf("record log: %w", err)
		}
		b := buf[:n]
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				r.nonZero = max(r.nonZero, off+int64(i)+1)
				break
			}
		}
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
			if ent, ok := parseLogEntry(e, l.salt); ok && ent.seg == seg && ent.lsn > cut && ent.lsn-uint64(ent.behind) > cut {
				r.durable = true
				return r, nil
			}
		}
		if n < len(buf) {
			return r, nil
		}
	}
}

// segmentsUsed reports whether any segment in dir holds a byte that is
// not zero.
func segmentsUsed(dir string) (bool, error) {
	segs, err := filepath.Glob(filepath.Join(dir, "records-*.log"))
	if err != nil {
		return false, err
	}
	buf := make([]byte, 1<<20)
	for _, p := range segs {
		f, err := os.Open(p)
		if err != nil {
			return false, fmt.Errorf("record log: %w", err)
		}
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := f.ReadAt(buf, off)
			for _, c := range buf[:n] {
				if c != 0 {
					f.Close()
					return true, nil
				}
			}
			if err != nil {
				break
			}
		}
		f.Close()
	}
	return false, nil
}

// readCheckpoint reads the checkpoint; fs.ErrNotExist when there is none.
func readCheckpoint(dir string) (checkpointState, error) {
	path := filepath.Join(dir, checkpointName)
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpointState{}, err
	}
	if len(b) != 40 || [8]byte(b[:8]) != checkpointMagic || crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return checkpointState{}, fmt.Errorf("%w: record log checkpoint %s is damaged (%d bytes); it is written whole or not at all, so this is not a crash's doing: restore the node's data from a backup", ErrCorrupt, path, len(b))
	}
	c := checkpointState{position{binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])}, binary.LittleEndian.Uint32(b[32:])}
	if c.seg == 0 || c.lsn == 0 {
		return checkpointState{}, fmt.Errorf("%w: record log checkpoint %s names segment %d, lsn %d: restore the node's data from a backup", ErrCorrupt, path, c.seg, c.lsn)
	}
	return c, nil
}

// writeCheckpoint records c durably, replacing the checkpoint whole.
func writeCheckpoint(dir string, c checkpointState) error {
	b := make([]byte, 0, 40)
	b = append(b, checkpointMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, c.seg)
	b = binary.LittleEndian.AppendUint64(b, c.off)
	b = binary.LittleEndian.AppendUint64(b, c.lsn)
	b = binary.LittleEndian.AppendUint32(b, c.salt)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	path := filepath.Join(dir, checkpointName)
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// logEntry is an entry read back.
type logEntry struct {
	seg, lsn uint64
	behind   uint32
	recs     []logRecord
	size     int
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
	for len(p) > 0 {
		cl := int(p[0])
		if cl == 0 || len(p) < 1+cl+4 {
			return logEntry{}, false
		}
		c := p[1 : 1+cl]
		el := binary.LittleEndian.Uint32(p[1+cl:])
		p = p[1+cl+4:]
		if el == 0 || uint64(el) > uint64(len(p)) {
			return logEntry{}, false
		}
		e.recs = append(e.recs, logRecord{cid: c, env: p[:el]})
		p = p[el:]
	}
	return e, len(e.recs) > 0
}

// appendLogEntry appends an entry holding recs to b.
func appendLogEntry(b []byte, salt uint32, seg, lsn uint64, behind uint32, recs []logRecord) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, logEntryTag)
	b = binary.LittleEndian.AppendUint64(b, seg)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.LittleEndian.AppendUint32(b, 0) // length
	b = binary.LittleEndian.AppendUint32(b, 0) // crc
	b = binary.LittleEndian.AppendUint32(b, behind)
	for _, r := range recs {
		b = append(b, byte(len(r.cid)))
		b = append(b, r.cid...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.env)))
		b = append(b, r.env...)
	}
	e := b[start:]
	binary.LittleEndian.PutUint32(e[20:], uint32(len(e)-logEntryHead))
	binary.LittleEndian.PutUint32(e[24:], entryCRC(salt, e, len(e)))
	return b
}

// append makes recs durable in the log and returns where each envelope
// is. The caller holds l.apply for reading until the records are in
// Badger.
func (l *recordLog) append(recs []logRecord) ([]location, error) {
	locs := make([]location, 0, len(recs))
	l.mu.Lock()
	for len(recs) > 0 {
		if l.err != nil {
			l.mu.Unlock()
			return nil, l.err
		}
		room := min(l.cur.size-int64(l.pos.off)-logEntryHead, maxEntryPayload)
		var size int64
		n := 0
		for n < len(recs) && size+recordSize(recs[n]) <= room {
			size += recordSize(recs[n])
			n++
		}
		if n == 0 {
			if recordSize(recs[0]) > min(l.segSize-logEntryHead, maxEntryPayload) {
				l.mu.Unlock()
				return nil, fmt.Errorf("%w: a record of %d bytes does not fit in a log entry", ErrInvalid, recordSize(recs[0]))
			}
			if err := l.roll(); err != nil {
				l.mu.Unlock()
				return nil, err
			}
			continue
		}
		behind := uint32(min(l.pos.lsn-l.synced, math.MaxUint32))
		b := appendLogEntry(make([]byte, 0, logEntryHead+size), l.salt, l.pos.seg, l.pos.lsn, behind, recs[:n])
		if _, err := l.cur.f.WriteAt(b, int64(l.pos.off)); err != nil {
			l.err = fmt.Errorf("record log %s: %w; writes stop until the node restarts: check the disk", segmentName(l.pos.seg), err)
			continue
		}
		off := l.pos.off + logEntryHead
		for _, r := range recs[:n] {
			off += uint64(1 + len(r.cid) + 4)
			locs = append(locs, location{l.pos.seg, off, uint32(len(r.env))})
			off += uint64(len(r.env))
		}
		if len(l.dirty) == 0 || l.dirty[len(l.dirty)-1] != l.cur {
			l.dirty = append(l.dirty, l.cur)
		}
		l.pos.off += uint64(len(b))
		l.pos.lsn++
		l.since += int64(len(b))
		l.written.Add(int64(len(b)))
		recs = recs[n:]
		if l.pos.off > uint64(l.cur.size/2) && l.next == nil {
			l.prepareNext()
		}
	}
	if l.since >= l.segSize {
		l.since = 0
		select {
		case l.ckpt <- struct{}{}:
		default:
		}
	}
	target := l.pos.lsn
	l.mu.Unlock()
	if err := l.syncTo(target); err != nil {
		return nil, err
	}
	return locs, nil
}

// syncTo makes the entries with an lsn below target durable, with one
// fdatasync for every entry written so far unless a sync since has done
// it already.
func (l *recordLog) syncTo(target uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.err != nil || l.synced >= target {
		err := l.err
		l.mu.Unlock()
		return err
	}
	files, upto := l.dirty, l.pos.lsn
	l.dirty = nil
	for _, f := range files {
		f.refs++
	}
	l.mu.Unlock()
	var err error
	for _, f := range files {
		if err == nil {
			err = fdatasync(f.f)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range files {
		l.release(f)
	}
	if err != nil {
		if l.err == nil {
			l.err = fmt.Errorf("record log: fdatasync: %w; writes stop until the node restarts: check the disk", err)
		}
		return l.err
	}
	l.synced = max(l.synced, upto)
	return nil
}

// release drops a sync's use of f, closing it once the writer has moved
// on and no sync uses it. l.mu is held.
func (l *recordLog) release(f *segFile) {
	if f.refs--; f.refs == 0 && f.retired {
		f.f.Close()
	}
}

// roll moves the writer to the next segment. The one it leaves is synced
// first, so that a replay, which reads segments in order, never finds a
// durable entry after one that is not. A segment that cannot be made (a
// full disk) fails this write only; the next tries again. l.mu is held.
func (l *recordLog) roll() error {
	if err := fdatasync(l.cur.f); err != nil {
		l.err = fmt.Errorf("record log: fdatasync %s: %w; writes stop until the node restarts: check the disk", segmentName(l.pos.seg), err)
		return l.err
	}
	l.synced = max(l.synced, l.pos.lsn)
	if l.next == nil {
		l.prepareNext()
	}
	p := l.next
	l.next = nil
	<-p.done
	if p.err != nil {
		return fmt.Errorf("record log: making %s: %w", segmentName(l.pos.seg+1), p.err)
	}
	old := l.cur
	old.retired = true
	if old.refs == 0 {
		old.f.Close()
	}
	l.dirty = slices.DeleteFunc(l.dirty, func(f *segFile) bool { return f == old })
	l.cur = &segFile{f: p.f, size: l.segSize}
	l.pos = position{l.pos.seg + 1, 0, l.pos.lsn}
	return nil
}

// prepareNext creates the next segment in the background. l.mu is held.
func (l *recordLog) prepareNext() {
	p := &prepared{done: make(chan struct{})}
	l.next = p
	seg := l.pos.seg + 1
	go func() {
		defer close(p.done)
		p.f, p.err = l.create(seg)
	}()
}

// create writes segment seg: zeros, synced, so that appends allocate
// nothing and their fdatasync has no metadata to journal. It replaces a
// segment of that name, which cutTail found holds no entry.
func (l *recordLog) create(seg uint64) (*os.File, error) {
	path := filepath.Join(l.dir, segmentName(seg))
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < l.segSize; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), l.segSize-off)], off); err != nil {
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err)
	}
	return f, nil
}

// read returns the envelope at loc.
func (l *recordLog) read(loc location) ([]byte, error) {
	if loc.len == 0 || loc.len > maxEntryPayload {
		return nil, fmt.Errorf("%w: record log pointer of %d bytes", ErrCorrupt, loc.len)
	}
	b := make([]byte, loc.len)
	l.readMu.RLock()
	f := l.readers[loc.seg]
	if f != nil {
		_, err := f.ReadAt(b, int64(loc.off))
		l.readMu.RUnlock()
		if err != nil {
			return nil, fmt.Errorf("%w: record log %s at %d: %v", ErrCorrupt, segmentName(loc.seg), loc.off, err)
		}
		return b, nil
	}
	l.readMu.RUnlock()
	l.readMu.Lock()
	defer l.readMu.Unlock()
	if f = l.readers[loc.seg]; f == nil {
		var err error
		if f, err = os.Open(filepath.Join(l.dir, segmentName(loc.seg))); err != nil {
			return nil, fmt.Errorf("%w: record log: %v", ErrCorrupt, err)
		}
		if len(l.readers) >= maxReaders {
			for seg, g := range l.readers { // any one; reads of it wait on readMu
				g.Close()
				delete(l.readers, seg)
				break
			}
		}
		l.readers[loc.seg] = f
	}
	if _, err := f.ReadAt(b, int64(loc.off)); err != nil {
		return nil, fmt.Errorf("%w: record log %s at %d: %v", ErrCorrupt, segmentName(loc.seg), loc.off, err)
	}
	return b, nil
}

// checkpoint makes Badger's writes durable and records the position up
// to which Badger holds every record of the log.
func (l *recordLog) checkpoint() error {
	l.apply.Lock()
	l.mu.Lock()
	p := l.pos
	l.mu.Unlock()
	l.apply.Unlock()
	if err := syncFiles(l.dir); err != nil {
		return fmt.Errorf("record log checkpoint: %w", err)
	}
	if err := writeCheckpoint(l.dir, checkpointState{p, l.salt}); err != nil {
		return fmt.Errorf("record log checkpoint: %w", err)
	}
	return nil
}

// checkpointer checkpoints each time a segment's worth of records has
// been appended. A failure is logged and tried again at the next: the
// log is never reused, so until then a replay starts further back.
func (l *recordLog) checkpointer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ckpt:
			if err := l.checkpoint(); err != nil {
				l.log.Warn("record log: checkpoint failed; the next replay starts at the one before", "err", err)
			}
		}
	}
}

// flusher starts, every flushInterval while records are being written,
// the writeback of Badger's dirty pages, until the log closes. They then
// reach the disk a little at a time, and a checkpoint's fsync finds little
// left to write: on the bench machine a checkpoint took 3 to 17 ms this
// way and 60 to 180 ms without, and the log's own fdatasyncs waited behind
// it.
func (l *recordLog) flusher() {
	defer l.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if l.written.Swap(0) > 0 {
				startWriteback(l.dir)
			}
		}
	}
}

// close stops the background work, checkpoints when asked (once Badger is
// closed, after which nothing needs replaying) and closes the files.
func (l *recordLog) close(checkpoint bool) error {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	if p := l.next; p != nil {
		<-p.done
		if p.f != nil {
			p.f.Close()
		}
		l.next = nil
	}
	l.mu.Unlock()
	var err error
	if checkpoint {
		err = l.checkpoint()
	}
	l.mu.Lock()
	if l.cur != nil {
		l.cur.retired = true
		if l.cur.refs == 0 {
			l.cur.f.Close()
		}
	}
	l.mu.Unlock()
	l.readMu.Lock()
	for seg, f := range l.readers {
		f.Close()
		delete(l.readers, seg)
	}
	l.readMu.Unlock()
	return err
}

// eachBadgerLog calls fn with each of Badger's value-log and memtable
// files in dir, open for reading. A file that disappears meanwhile (a
// memtable flushed to a table) is skipped.
func eachBadgerLog(dir string, fn func(name string, f *os.File) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".vlog") && !strings.HasSuffix(name, ".mem") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = fn(name, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// syncFiles makes durable every write Badger made to its value-log and
// memtable files in dir, which it does not sync itself when its writes are
// not synced. (It syncs its tables and manifest whenever it writes them. A
// memtable file that disappears while this runs was flushed to a table.)
func syncFiles(dir string) error {
	err := eachBadgerLog(dir, func(name string, f *os.File) error {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// startWriteback asks the kernel to start writing the dirty pages of
// Badger's value-log and memtable files in dir, without waiting for them
// or flushing the disk's cache.
func startWriteback(dir string) {
	_ = eachBadgerLog(dir, func(_ string, f *os.File) error {
		startWritebackFile(f)
		return nil
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
