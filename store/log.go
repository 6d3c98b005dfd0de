package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
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
// Segment files are records-NNNNNN.log, of SegmentSize bytes. Each holds
// entries, integers little-endian:
//
//	magic(4) segment(8) lsn(8) length(4) crc32c(4) payload(length)
//	payload: records, each cid-length(1) cid envelope-length(4) envelope
//
// The CRC covers segment, lsn, length and payload. Entries never span
// segments, and lsns follow each other: a replay stops at the first entry
// that does not check out or does not follow (zeros, a torn write).
// records.checkpoint holds the checkpoint: magic(8) segment(8) offset(8)
// next-lsn(8) crc32c(4).
const (
	logEntryHead   = 32
	logEntryTag    = 0x45_4c_53_53 // "SSLE"
	checkpointName = "records.checkpoint"
)

var (
	checkpointMagic = [8]byte{'S', 'S', 'C', 'K', 'P', 'T', '0', '1'}
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

// replayRecord is a record read back from the log after the checkpoint.
type replayRecord struct {
	logRecord
	loc location
}

// recordLog is the open log of a store.
type recordLog struct {
	dir     string
	segSize int64

	// apply is held for reading by a batch from its append until it is
	// in Badger; a checkpoint takes it to find a position before which
	// every record is in Badger.
	apply sync.RWMutex

	mu      sync.Mutex // the writer
	pos     position
	cur     *os.File      // segment pos.seg
	next    chan *os.File // the next segment, once prepared
	nextErr chan error
	since   int64 // bytes appended since the last checkpoint
	err     error // a failure after which nothing is durable

	filesMu sync.RWMutex
	files   map[uint64]*os.File // open segments, for reading

	written atomic.Int64 // bytes appended since the flusher last ran
	ckpt    chan struct{}
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	ckptErr atomic.Pointer[error]
}

func segmentName(seg uint64) string { return fmt.Sprintf("records-%06d.log", seg) }

// openLog opens the log in dir, creating its first segment when there is
// none, and returns the records written after the last checkpoint, in
// order.
func openLog(dir string, segSize int64) (*recordLog, []replayRecord, error) {
	l := &recordLog{dir: dir, segSize: segSize, files: map[uint64]*os.File{},
		ckpt: make(chan struct{}, 1), stop: make(chan struct{})}
	start, err := readCheckpoint(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []replayRecord
	pos := start
	for seg := start.seg; ; seg++ {
		f, err := l.file(seg)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			l.closeFiles()
			return nil, nil, fmt.Errorf("record log: %w", err)
		}
		from := pos
		if seg != start.seg {
			// The writer moves to the next segment when an entry does
			// not fit; the log goes on there if that segment starts
			// with the entry that follows.
			from = position{seg, 0, pos.lsn}
		}
		recs, end, err := l.scanSegment(f, from)
		if err != nil {
			l.closeFiles()
			return nil, nil, err
		}
		if seg != start.seg && end == from {
			break // prepared but never written to
		}
		out = append(out, recs...)
		pos = end
	}
	l.pos = pos
	if l.pos.lsn == 0 {
		l.pos.lsn = 1
	}
	cur, err := l.file(l.pos.seg)
	if errors.Is(err, fs.ErrNotExist) {
		cur, err = l.create(l.pos.seg)
	}
	if err != nil {
		l.closeFiles()
		return nil, nil, fmt.Errorf("record log: %w", err)
	}
	l.cur = cur
	l.wg.Add(2)
	go l.flusher()
	go l.checkpointer()
	return l, out, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// scanSegment reads the entries of segment file f from pos on, and returns
// their records and the position after the last.
func (l *recordLog) scanSegment(f *os.File, pos position) ([]replayRecord, position, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, pos, fmt.Errorf("record log: %w", err)
	}
	l.segSize = st.Size() // segments keep the size they were made with
	buf := make([]byte, max(0, st.Size()-int64(pos.off)))
	n, err := f.ReadAt(buf, int64(pos.off))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, pos, fmt.Errorf("record log %s: %w", segmentName(pos.seg), err)
	}
	buf = buf[:n]
	var out []replayRecord
	for len(buf) > 0 {
		seg, lsn, recs, size, ok := parseLogEntry(buf)
		if !ok || seg != pos.seg || lsn != pos.lsn {
			break
		}
		off := pos.off + logEntryHead
		for _, r := range recs {
			off += uint64(1 + len(r.cid) + 4)
			out = append(out, replayRecord{logRecord{cid: clone(r.cid), env: clone(r.env)}, location{pos.seg, off, uint32(len(r.env))}})
			off += uint64(len(r.env))
		}
		pos.off += uint64(size)
		pos.lsn++
		buf = buf[size:]
	}
	return out, pos, nil
}

// readCheckpoint reads the checkpoint; a log without one starts at the
// beginning of segment 1.
func readCheckpoint(dir string) (position, error) {
	path := filepath.Join(dir, checkpointName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return position{1, 0, 1}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("record log: %w", err)
	}
	if len(b) != 36 || [8]byte(b[:8]) != checkpointMagic || crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		return position{}, fmt.Errorf("record log checkpoint %s is damaged (%d bytes); it is written whole or not at all, so this is not a crash's doing: restore the node's data from a backup", path, len(b))
	}
	return position{binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])}, nil
}

// writeCheckpoint records p durably, replacing the checkpoint whole.
func writeCheckpoint(dir string, p position) error {
	b := make([]byte, 0, 36)
	b = append(b, checkpointMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, p.seg)
	b = binary.LittleEndian.AppendUint64(b, p.off)
	b = binary.LittleEndian.AppendUint64(b, p.lsn)
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

// parseLogEntry reads the entry at the start of b. ok is false when there
// is none: zeros, a torn or damaged entry, or garbage.
func parseLogEntry(b []byte) (seg, lsn uint64, recs []logRecord, n int, ok bool) {
	if len(b) < logEntryHead || binary.LittleEndian.Uint32(b) != logEntryTag {
		return 0, 0, nil, 0, false
	}
	seg = binary.LittleEndian.Uint64(b[4:])
	lsn = binary.LittleEndian.Uint64(b[12:])
	length := binary.LittleEndian.Uint32(b[20:])
	sum := binary.LittleEndian.Uint32(b[24:])
	if uint64(length) > uint64(len(b)-logEntryHead) {
		return 0, 0, nil, 0, false
	}
	n = logEntryHead + int(length)
	crc := crc32.Checksum(b[4:24], castagnoli)
	crc = crc32.Update(crc, castagnoli, b[logEntryHead:n])
	if crc != sum {
		return 0, 0, nil, 0, false
	}
	p := b[logEntryHead:n]
	for len(p) > 0 {
		cl := int(p[0])
		if cl == 0 || len(p) < 1+cl+4 {
			return 0, 0, nil, 0, false
		}
		c := p[1 : 1+cl]
		el := binary.LittleEndian.Uint32(p[1+cl:])
		p = p[1+cl+4:]
		if el == 0 || uint64(el) > uint64(len(p)) {
			return 0, 0, nil, 0, false
		}
		recs = append(recs, logRecord{cid: c, env: p[:el]})
		p = p[el:]
	}
	return seg, lsn, recs, n, len(recs) > 0
}

// appendLogEntry appends an entry holding recs to b.
func appendLogEntry(b []byte, seg, lsn uint64, recs []logRecord) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, logEntryTag)
	b = binary.LittleEndian.AppendUint64(b, seg)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.LittleEndian.AppendUint32(b, 0) // length
	b = binary.LittleEndian.AppendUint32(b, 0) // crc
	b = binary.LittleEndian.AppendUint32(b, 0) // padding to 32
	for _, r := range recs {
		b = append(b, byte(len(r.cid)))
		b = append(b, r.cid...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.env)))
		b = append(b, r.env...)
	}
	binary.LittleEndian.PutUint32(b[start+20:], uint32(len(b)-start-logEntryHead))
	crc := crc32.Checksum(b[start+4:start+24], castagnoli)
	crc = crc32.Update(crc, castagnoli, b[start+logEntryHead:])
	binary.LittleEndian.PutUint32(b[start+24:], crc)
	return b
}

// append makes recs durable in the log and returns where each envelope
// is. The caller holds l.apply for reading until the records are in
// Badger.
func (l *recordLog) append(recs []logRecord) ([]location, error) {
	locs := make([]location, 0, len(recs))
	var sync []*os.File
	l.mu.Lock()
	for len(recs) > 0 {
		if l.err != nil {
			l.mu.Unlock()
			return nil, l.err
		}
		room := l.segSize - int64(l.pos.off) - logEntryHead
		var size int64
		n := 0
		for n < len(recs) && size+recordSize(recs[n]) <= room {
			size += recordSize(recs[n])
			n++
		}
		if n == 0 {
			if l.pos.off == 0 {
				l.mu.Unlock()
				return nil, fmt.Errorf("%w: a record of %d bytes does not fit in a log segment of %d bytes", ErrInvalid, recordSize(recs[0]), l.segSize)
			}
			l.roll()
			continue
		}
		b := appendLogEntry(make([]byte, 0, logEntryHead+size), l.pos.seg, l.pos.lsn, recs[:n])
		if _, err := l.cur.WriteAt(b, int64(l.pos.off)); err != nil {
			l.err = fmt.Errorf("record log %s: %w", segmentName(l.pos.seg), err)
			continue
		}
		off := l.pos.off + logEntryHead
		for _, r := range recs[:n] {
			off += uint64(1 + len(r.cid) + 4)
			locs = append(locs, location{l.pos.seg, off, uint32(len(r.env))})
			off += uint64(len(r.env))
		}
		if len(sync) == 0 || sync[len(sync)-1] != l.cur {
			sync = append(sync, l.cur)
		}
		l.pos.off += uint64(len(b))
		l.pos.lsn++
		l.since += int64(len(b))
		l.written.Add(int64(len(b)))
		recs = recs[n:]
		if l.pos.off > uint64(l.segSize/2) && l.next == nil {
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
	l.mu.Unlock()
	for _, f := range sync {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			l.mu.Lock()
			l.err = fmt.Errorf("record log: fdatasync: %w", err)
			l.mu.Unlock()
			return nil, l.err
		}
	}
	return locs, nil
}

// roll moves the writer to the next segment. The one it leaves is synced
// first, so that a replay, which reads segments in order, never finds a
// durable entry after one that is not. l.mu is held.
func (l *recordLog) roll() {
	if err := unix.Fdatasync(int(l.cur.Fd())); err != nil {
		l.err = fmt.Errorf("record log: fdatasync: %w", err)
		return
	}
	if l.next == nil {
		l.prepareNext()
	}
	var f *os.File
	select {
	case f = <-l.next:
	case err := <-l.nextErr:
		l.err = fmt.Errorf("record log: %w", err)
		return
	}
	l.next, l.nextErr = nil, nil
	l.pos = position{l.pos.seg + 1, 0, l.pos.lsn}
	l.cur = f
}

// prepareNext creates the next segment in the background. l.mu is held.
func (l *recordLog) prepareNext() {
	next, errc := make(chan *os.File, 1), make(chan error, 1)
	l.next, l.nextErr = next, errc
	seg := l.pos.seg + 1
	go func() {
		f, err := l.create(seg)
		if err != nil {
			errc <- err
			return
		}
		next <- f
	}()
}

// create writes segment seg: zeros, synced, so that appends allocate
// nothing and their fdatasync has no metadata to journal.
func (l *recordLog) create(seg uint64) (*os.File, error) {
	path := filepath.Join(l.dir, segmentName(seg))
	if f, err := l.file(seg); err == nil {
		return f, nil // prepared before a restart
	}
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
	l.filesMu.Lock()
	l.files[seg] = f
	l.filesMu.Unlock()
	return f, nil
}

// file returns segment seg, open for reading and writing.
func (l *recordLog) file(seg uint64) (*os.File, error) {
	l.filesMu.RLock()
	f := l.files[seg]
	l.filesMu.RUnlock()
	if f != nil {
		return f, nil
	}
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	if f := l.files[seg]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(seg)), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	l.files[seg] = f
	return f, nil
}

// read returns the envelope at loc.
func (l *recordLog) read(loc location) ([]byte, error) {
	f, err := l.file(loc.seg)
	if err != nil {
		return nil, fmt.Errorf("%w: record log: %v", ErrCorrupt, err)
	}
	b := make([]byte, loc.len)
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
	if err := writeCheckpoint(l.dir, p); err != nil {
		return fmt.Errorf("record log checkpoint: %w", err)
	}
	return nil
}

// checkpointer checkpoints each time a segment's worth of records has
// been appended. A failure stops the writes: what follows would not be
// durable once the log is reused.
func (l *recordLog) checkpointer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.ckpt:
			if err := l.checkpoint(); err != nil {
				l.mu.Lock()
				if l.err == nil {
					l.err = err
				}
				l.mu.Unlock()
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

// close stops the background work, checkpoints when Badger is closed
// (after which nothing needs replaying) and closes the files.
func (l *recordLog) close(checkpoint bool) error {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	next, errc := l.next, l.nextErr
	l.mu.Unlock()
	if next != nil {
		select { // a segment being prepared
		case <-next:
		case <-errc:
		}
	}
	var err error
	if checkpoint {
		err = l.checkpoint()
	}
	l.closeFiles()
	return err
}

func (l *recordLog) closeFiles() {
	l.filesMu.Lock()
	defer l.filesMu.Unlock()
	for seg, f := range l.files {
		f.Close()
		delete(l.files, seg)
	}
}

// syncFiles makes durable every write Badger made to its value-log and
// memtable files in dir, which it does not sync itself when its writes are
// not synced. (It syncs its tables and manifest whenever it writes them. A
// memtable file that disappears while this runs was flushed to a table.)
func syncFiles(dir string) error {
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
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
	}
	return syncDir(dir)
}

// startWriteback asks the kernel to start writing the dirty pages of
// Badger's value-log and memtable files in dir, without waiting for them
// or flushing the disk's cache.
func startWriteback(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".vlog") && !strings.HasSuffix(name, ".mem") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		f.Close()
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
