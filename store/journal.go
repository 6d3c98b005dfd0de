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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The journal is the store's redo log, and what makes a record durable.
//
// Badger's own synced write costs two msyncs, of the value log and of the
// memtable's log, each on a sparse file whose blocks the file system must
// allocate and journal: about twice the time of one fdatasync of a file
// whose blocks are already written. So the store writes Badger without
// syncing it, and makes each batch durable first in the journal, a file
// of zeros written once when it is created: PutBatch appends the batch's
// envelopes, fdatasyncs, and only then writes them to Badger.
//
// The file is a header and two halves. Entries go into one half, tagged
// with the half's epoch; when it is full, the writer moves to the other
// half with the next epoch, and a checkpoint, in the background, waits for
// the old epoch's batches to be written to Badger, fsyncs Badger's value-log
// and memtable files (its tables and manifest it syncs itself), and then
// records the epoch as checkpointed in the header, which frees the half.
// Opening the store replays every entry of a later epoch, in order: a
// record Badger lost (the machine went down before the page cache reached
// the disk) is written again, and a record whose value Badger lost while
// its index entry reached a table is given its value again.
//
// Layout, integers little-endian:
//
//	header (journalHeader bytes): magic(8) checkpointed-epoch(8) crc32c(4)
//	half 0, half 1: entries, each
//	  magic(4) epoch(8) lsn(8) length(4) crc32c(4) payload(length)
//	  payload: records, each cid-length(1) cid envelope-length(4) envelope
//
// The entry's CRC covers its epoch, lsn, length and payload. A half is read
// from its start until an entry does not check out or changes epoch.
const (
	journalName      = "sangsaeng.journal"
	journalHeader    = 4096
	journalEntryHead = 28
	journalEntryTag  = 0x45_4a_53_53 // "SSJE"
)

var (
	journalMagic = [8]byte{'S', 'S', 'J', 'R', 'N', 'L', '0', '1'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// journalRecord is one record of a journal entry.
type journalRecord struct {
	cid []byte
	env []byte
}

// journal is an open journal file.
type journal struct {
	f    *os.File
	dir  string // Badger's directory, whose files a checkpoint syncs
	half int64  // bytes in each half

	mu        sync.Mutex
	cond      sync.Cond
	epoch     uint64 // epoch of the half being written
	active    int    // half being written
	off       int64  // next entry's offset in the active half
	lsn       uint64 // last entry's sequence number
	inflight  map[uint64]int
	free      [2]bool // a half may be written: its epoch is checkpointed
	ckptEpoch uint64  // in the header
	ckpting   bool
	err       error // a checkpoint failed: nothing more is durable
	wg        sync.WaitGroup

	written  atomic.Int64 // bytes journaled since the flusher last ran
	stop     chan struct{}
	stopOnce sync.Once
}

// flushInterval is how often the flusher starts the writeback of Badger's
// files while records are being written.
const flushInterval = 200 * time.Millisecond

// flusher starts, every flushInterval while records are being written,
// the writeback of Badger's dirty pages, until the journal closes. Those
// pages then reach the disk a little at a time, and a checkpoint's fsync
// finds little left to write: measured on the bench machine, a checkpoint
// took 3 to 17 ms this way and 60 to 180 ms without, and the journal's
// own fdatasyncs waited behind it.
func (j *journal) flusher() {
	defer j.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if j.written.Swap(0) > 0 {
				startWriteback(j.dir)
			}
		}
	}
}

// openJournal opens the journal in dir, creating it (size bytes of zeros,
// synced) when it does not exist. It returns the entries a replay must
// apply, oldest first.
func openJournal(dir string, size int64) (*journal, [][]journalRecord, error) {
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = createJournal(path, size)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	half := (st.Size() - journalHeader) / 2
	if half < journalEntryHead+1 {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: %d bytes is too small to be a journal; move it away if the store was closed cleanly", path, st.Size())
	}
	j := &journal{f: f, dir: dir, half: half, inflight: map[uint64]int{}, free: [2]bool{true, true}, stop: make(chan struct{})}
	j.cond.L = &j.mu

	var hdr [20]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: read the header: %w", path, err)
	}
	if [8]byte(hdr[:8]) != journalMagic || crc32.Checksum(hdr[:16], castagnoli) != binary.LittleEndian.Uint32(hdr[16:]) {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: the header is damaged (magic %q); the records of the last moments before an unclean stop may be lost: move the file away to open the store without them", path, hdr[:8])
	}
	j.ckptEpoch = binary.LittleEndian.Uint64(hdr[8:16])

	type entry struct {
		epoch, lsn uint64
		recs       []journalRecord
	}
	var pending []entry
	maxEpoch := j.ckptEpoch
	buf := make([]byte, half)
	for h := range 2 {
		clear(buf)
		if _, err := f.ReadAt(buf, journalHeader+int64(h)*half); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return nil, nil, fmt.Errorf("journal %s: %w", path, err)
		}
		var first uint64
		for off := 0; ; {
			epoch, lsn, recs, n, ok := parseJournalEntry(buf[off:])
			if !ok || (first != 0 && epoch != first) {
				break
			}
			first = epoch
			maxEpoch = max(maxEpoch, epoch)
			j.lsn = max(j.lsn, lsn)
			if epoch > j.ckptEpoch {
				for i, r := range recs { // buf is read again for the next half
					recs[i] = journalRecord{cid: slices.Clone(r.cid), env: slices.Clone(r.env)}
				}
				pending = append(pending, entry{epoch, lsn, recs})
			}
			off += n
		}
	}
	slices.SortFunc(pending, func(a, b entry) int {
		switch {
		case a.lsn < b.lsn:
			return -1
		case a.lsn > b.lsn:
			return 1
		}
		return 0
	})
	out := make([][]journalRecord, len(pending))
	for i, e := range pending {
		out[i] = e.recs
	}
	// Whatever is replayed is checkpointed under maxEpoch before the first
	// new write, which takes the next epoch in half 0.
	j.epoch = maxEpoch + 1
	j.wg.Add(1)
	go j.flusher()
	return j, out, nil
}

// createJournal writes a new journal of size bytes: a header with epoch 0
// and zeros, synced, so that later writes allocate nothing.
func createJournal(path string, size int64) (*os.File, error) {
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
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fail(err)
		}
	}
	if _, err := f.WriteAt(journalHeaderBytes(0), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fail(err)
	}
	return f, nil
}

func journalHeaderBytes(epoch uint64) []byte {
	b := make([]byte, 20)
	copy(b, journalMagic[:])
	binary.LittleEndian.PutUint64(b[8:], epoch)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	return b
}

// parseJournalEntry reads the entry at the start of b. ok is false when
// there is none: zeros, a torn or damaged entry, or garbage.
func parseJournalEntry(b []byte) (epoch, lsn uint64, recs []journalRecord, n int, ok bool) {
	if len(b) < journalEntryHead || binary.LittleEndian.Uint32(b) != journalEntryTag {
		return 0, 0, nil, 0, false
	}
	epoch = binary.LittleEndian.Uint64(b[4:])
	lsn = binary.LittleEndian.Uint64(b[12:])
	length := binary.LittleEndian.Uint32(b[20:])
	sum := binary.LittleEndian.Uint32(b[24:])
	if epoch == 0 || uint64(length) > uint64(len(b)-journalEntryHead) {
		return 0, 0, nil, 0, false
	}
	n = journalEntryHead + int(length)
	crc := crc32.Checksum(b[4:24], castagnoli)
	crc = crc32.Update(crc, castagnoli, b[journalEntryHead:n])
	if crc != sum {
		return 0, 0, nil, 0, false
	}
	p := b[journalEntryHead:n]
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
		recs = append(recs, journalRecord{cid: c, env: p[:el]})
		p = p[el:]
	}
	return epoch, lsn, recs, n, len(recs) > 0
}

// appendJournalEntry appends an entry holding recs to b.
func appendJournalEntry(b []byte, epoch, lsn uint64, recs []journalRecord) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, journalEntryTag)
	b = binary.LittleEndian.AppendUint64(b, epoch)
	b = binary.LittleEndian.AppendUint64(b, lsn)
	b = binary.LittleEndian.AppendUint32(b, 0) // length
	b = binary.LittleEndian.AppendUint32(b, 0) // crc
	for _, r := range recs {
		b = append(b, byte(len(r.cid)))
		b = append(b, r.cid...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.env)))
		b = append(b, r.env...)
	}
	binary.LittleEndian.PutUint32(b[start+20:], uint32(len(b)-start-journalEntryHead))
	crc := crc32.Checksum(b[start+4:start+24], castagnoli)
	crc = crc32.Update(crc, castagnoli, b[start+journalEntryHead:])
	binary.LittleEndian.PutUint32(b[start+24:], crc)
	return b
}

// recordSize is what a record takes in an entry's payload.
func recordSize(r journalRecord) int64 { return int64(1 + len(r.cid) + 4 + len(r.env)) }

// write makes recs durable in the journal. The caller writes them to
// Badger and then calls release, which lets the checkpoint of their epochs
// go ahead; it must be called whatever happens.
func (j *journal) write(recs []journalRecord) (release func(), err error) {
	var epochs []uint64
	release = func() {
		j.mu.Lock()
		for _, e := range epochs {
			if j.inflight[e]--; j.inflight[e] == 0 {
				delete(j.inflight, e)
			}
		}
		j.cond.Broadcast()
		j.mu.Unlock()
	}
	j.mu.Lock()
	for len(recs) > 0 {
		if j.err != nil {
			j.mu.Unlock()
			return release, j.err
		}
		room := j.half - j.off - journalEntryHead
		var size int64
		n := 0
		for n < len(recs) && size+recordSize(recs[n]) <= room {
			size += recordSize(recs[n])
			n++
		}
		if n == 0 {
			if j.off == 0 {
				j.mu.Unlock()
				return release, fmt.Errorf("%w: a record of %d bytes does not fit in the journal's halves of %d bytes", ErrInvalid, recordSize(recs[0]), j.half)
			}
			j.switchHalf()
			continue
		}
		j.lsn++
		b := appendJournalEntry(make([]byte, 0, journalEntryHead+size), j.epoch, j.lsn, recs[:n])
		if _, err := j.f.WriteAt(b, journalHeader+int64(j.active)*j.half+j.off); err != nil {
			j.err = fmt.Errorf("journal: %w", err)
			continue
		}
		j.off += int64(len(b))
		j.written.Add(int64(len(b)))
		j.inflight[j.epoch]++
		epochs = append(epochs, j.epoch)
		recs = recs[n:]
	}
	j.mu.Unlock()
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		j.mu.Lock()
		j.err = fmt.Errorf("journal: fdatasync: %w", err)
		j.mu.Unlock()
		return release, j.err
	}
	return release, nil
}

// switchHalf moves the writer to the other half, once it is free, and
// starts the checkpoint of the epoch just ended. j.mu is held.
func (j *journal) switchHalf() {
	e := j.epoch
	for !j.free[1-j.active] && j.err == nil && j.epoch == e {
		j.cond.Wait()
	}
	if j.err != nil || j.epoch != e {
		return // failed, or another writer switched while this one waited
	}
	other := 1 - j.active
	old, oldHalf := j.epoch, j.active
	j.free[oldHalf] = false
	j.free[other] = false
	j.epoch++
	j.active, j.off = other, 0
	j.ckpting = true
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		err := j.checkpoint(old)
		j.mu.Lock()
		if err != nil && j.err == nil {
			j.err = err
		}
		if err == nil {
			j.free[oldHalf] = true
		}
		j.ckpting = false
		j.cond.Broadcast()
		j.mu.Unlock()
	}()
}

// checkpoint waits until the batches of epochs up to epoch are in Badger,
// makes Badger's files durable, and records epoch as checkpointed.
func (j *journal) checkpoint(epoch uint64) error {
	j.mu.Lock()
	for {
		busy := false
		for e, n := range j.inflight {
			if e <= epoch && n > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		j.cond.Wait()
	}
	j.mu.Unlock()
	if err := syncFiles(j.dir); err != nil {
		return fmt.Errorf("journal checkpoint: %w", err)
	}
	if _, err := j.f.WriteAt(journalHeaderBytes(epoch), 0); err != nil {
		return fmt.Errorf("journal checkpoint: %w", err)
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("journal checkpoint: fdatasync: %w", err)
	}
	j.mu.Lock()
	j.ckptEpoch = max(j.ckptEpoch, epoch)
	j.mu.Unlock()
	return nil
}

// checkpointAll checkpoints everything written so far: after a replay, and
// when the store closes. No write may be in progress.
func (j *journal) checkpointAll() error {
	j.mu.Lock()
	for j.ckpting {
		j.cond.Wait()
	}
	epoch := j.epoch
	j.mu.Unlock()
	if err := j.checkpoint(epoch); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	// The next write starts a new epoch in half 0; what both halves hold
	// is now older than the checkpoint.
	j.epoch++
	j.active, j.off = 0, 0
	j.free = [2]bool{true, true}
	return nil
}

// close waits for a checkpoint in progress and closes the file.
func (j *journal) close() error {
	j.stopOnce.Do(func() { close(j.stop) })
	j.wg.Wait()
	return j.f.Close()
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// startWriteback asks the kernel to start writing the dirty pages of
// Badger's value-log and memtable files in dir, without waiting for them
// or flushing the disk's cache: a checkpoint's fsync then finds little left
// to write.
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
