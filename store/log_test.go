package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// copyDir copies the regular files of src into dst, as they are now: what a
// machine that went down would find on its disk if every page the store
// wrote had reached it (the kernel keeps them through a crash of the
// process).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// logged returns options whose logger writes into the buffer returned.
func logged(t testing.TB) (Options, *bytes.Buffer) {
	o := testOptions(t)
	var buf bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return o, &buf
}

// putChain stores n records of one author, in batches of batch.
func putChain(t testing.TB, s *Store, n, batch int, text string) []*protocol.Signed {
	t.Helper()
	a := newAuthor(t)
	ch := testChannel("journal")
	var recs []*protocol.Signed
	for i := range n {
		recs = append(recs, a.next(t, ch, protocol.KindNote, int64(1000+i), note(fmt.Sprintf("%s %d", text, i))))
	}
	for i := 0; i < n; i += batch {
		if _, err := s.PutBatch(recs[i:min(i+batch, n)]); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

// logFiles copies the record log's segments of src into dst, with its
// checkpoint when checkpoint is set, or else with a checkpoint at the
// log's start (same salt), so that the whole log is replayed.
func logFiles(t testing.TB, src, dst string, checkpoint bool) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(src, "records-*.log"))
	if len(segs) == 0 {
		t.Fatal("no record-log segment")
	}
	for _, f := range segs {
		copyFile(t, f, filepath.Join(dst, filepath.Base(f)))
	}
	ck, err := readCheckpoint(src)
	if err != nil {
		t.Fatal(err)
	}
	if !checkpoint {
		ck.position = position{1, 0, 1}
	}
	if err := writeCheckpoint(dst, ck); err != nil {
		t.Fatal(err)
	}
}

// TestLogReplaysLostWrites: the machine goes down and of the store's files
// only the record log reached the disk, since Badger's writes are not
// synced. Opening the store indexes every record again, with the same
// indexes and heads.
func TestLogReplaysLostWrites(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	recs := putChain(t, s, 300, 7, "replayed")
	putChain(t, s, 5, 1, "singly")
	want := dump(t, s)

	lost := t.TempDir()
	logFiles(t, dir, lost, true)
	o, log := logged(t)
	r := openStore(t, lost, o)
	sameDump(t, dump(t, r), want)
	if r.Count() != int64(len(recs)+5) {
		t.Errorf("count %d after replay, want %d", r.Count(), len(recs)+5)
	}
	if !strings.Contains(log.String(), "records=305") {
		t.Errorf("replay log does not say 305 records were indexed again: %s", log)
	}
	for _, rec := range recs {
		mustHave(t, r, rec)
	}
}

// TestLogAfterProcessCrash: the process dies and every page it wrote is
// still there (the kernel had them). Nothing needs indexing again.
func TestLogAfterProcessCrash(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	putChain(t, s, 200, 10, "crash")
	want := dump(t, s)

	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	o, log := logged(t)
	r := openStore(t, crashed, o)
	sameDump(t, dump(t, r), want)
	if strings.Contains(log.String(), "indexed again") {
		t.Errorf("records indexed again after a crash of the process alone: %s", log)
	}
}

// TestLogSegments fills several small segments: writes go on through the
// segment changes and checkpoints, a crash copy opens with every record,
// and a clean reopen replays nothing.
func TestLogSegments(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.LogSegmentSize = 1 << 20
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	recs := putChain(t, s, 4000, 50, strings.Repeat("x", 300))
	segs, _ := filepath.Glob(filepath.Join(dir, "records-*.log"))
	if len(segs) < 3 {
		t.Errorf("%d segments after %d records of about 500 bytes in 1 MB segments", len(segs), len(recs))
	}
	want := dump(t, s)

	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	c := openStore(t, crashed, o)
	sameDump(t, dump(t, c), want)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o2, log := logged(t)
	o2.LogSegmentSize = o.LogSegmentSize
	r := openStore(t, dir, o2)
	if log.Len() > 0 {
		t.Errorf("a clean reopen logged: %s", log)
	}
	sameDump(t, dump(t, r), want)
	more := putChain(t, r, 100, 10, "after")
	for _, rec := range more {
		mustHave(t, r, rec)
	}
}

func mustHave(t testing.TB, s *Store, rec *protocol.Signed) {
	t.Helper()
	got, err := s.Get(rec.CID)
	if err != nil {
		t.Fatalf("get %s: %v", rec.CID, err)
	}
	if !bytes.Equal(got.Envelope, rec.Envelope) {
		t.Fatalf("%s: a different envelope", rec.CID)
	}
}

// TestLogTornTail: the last entry was being written when the machine went
// down. Its batch was never acknowledged; the batches before it are all
// indexed again, and the log goes on from there.
func TestLogTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	recs := putChain(t, s, 100, 10, "torn")

	lost := t.TempDir()
	logFiles(t, dir, lost, true)
	s.rlog.mu.Lock()
	seg, end := s.rlog.pos.seg, s.rlog.pos.off
	s.rlog.mu.Unlock()
	f, err := os.OpenFile(filepath.Join(lost, segmentName(seg)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff}, int64(end)-3); err != nil {
		t.Fatal(err)
	}
	f.Close()

	o := testOptions(t)
	r, err := Open(lost, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Count(), int64(len(recs)-10); got != want {
		t.Errorf("%d records after a torn last entry, want %d", got, want)
	}
	mustHead(t, r, testChannel("journal"), recs[0].Record.Author, 90)
	more := putChain(t, r, 20, 5, "after the tear")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Again, from the segments alone (everything is indexed again):
	// the entries written after the tear follow on from the last good
	// one.
	again := t.TempDir()
	logFiles(t, lost, again, false)
	a := openStore(t, again, o)
	if got, want := a.Count(), int64(len(recs)-10+len(more)); got != want {
		t.Errorf("%d records from the log after the tear, want %d", got, want)
	}
	for _, rec := range append(recs[:90:90], more...) {
		mustHave(t, a, rec)
	}
}

// TestLogDamagedCheckpoint: a checkpoint that does not check out is not
// trusted; the error names the file and what to do.
func TestLogDamagedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	putChain(t, s, 10, 10, "checkpoint")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, checkpointName)
	if err := os.WriteFile(cp, []byte("garbage!"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions(t))
	if err == nil {
		t.Fatal("a store with a damaged checkpoint opened")
	}
	for _, want := range []string{cp, "is damaged", "restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestLogEntryRoundTrip checks the entry encoding against its parser.
func TestLogEntryRoundTrip(t *testing.T) {
	recs := []logRecord{{cid: []byte("cid-1"), env: []byte("envelope one")}, {cid: []byte("c2"), env: bytes.Repeat([]byte{7}, 1000)}}
	b := appendLogEntry(nil, 77, 3, 42, 5, recs)
	e, ok := parseLogEntry(append(b, 0, 0, 0), 77)
	if !ok || e.seg != 3 || e.lsn != 42 || e.behind != 5 || e.size != len(b) || len(e.recs) != 2 {
		t.Fatalf("parse: ok %v %+v (size of %d)", ok, e, len(b))
	}
	for i := range recs {
		if !bytes.Equal(e.recs[i].cid, recs[i].cid) || !bytes.Equal(e.recs[i].env, recs[i].env) {
			t.Errorf("record %d differs", i)
		}
	}
	if _, ok := parseLogEntry(b, 78); ok {
		t.Fatal("an entry parses under another log's salt")
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x10
		if _, ok := parseLogEntry(bad, 77); ok {
			t.Fatalf("an entry with byte %d flipped parses", i)
		}
	}
}

// FuzzLogEntry: the parser of log entries, which reads what is on the disk
// after a crash, never panics, and what it accepts encodes back to the
// same bytes.
func FuzzLogEntry(f *testing.F) {
	f.Add(appendLogEntry(nil, 0, 1, 1, 1, []logRecord{{cid: []byte("c"), env: []byte("e")}}))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := parseLogEntry(b, 0)
		if !ok {
			return
		}
		if e.size > len(b) {
			t.Fatalf("entry of %d bytes in %d", e.size, len(b))
		}
		again := appendLogEntry(nil, 0, e.seg, e.lsn, e.behind, e.recs)
		if !bytes.Equal(again, b[:e.size]) {
			t.Fatalf("re-encoded entry differs")
		}
	})
}

// TestLayoutOneStillRead: a store written before the record log keeps its
// envelopes in Badger (layout 1). It opens, its records read as before,
// new records go to the log, and the layout becomes 2, which older
// binaries refuse.
func TestLayoutOneStillRead(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	old := putChain(t, s, 50, 10, "old")
	// Make it what the old layout wrote: envelopes as values, version 1.
	err = s.db.Update(func(txn *badger.Txn) error {
		for _, r := range old {
			if err := txn.Set(recordKey(r.CID), r.Envelope); err != nil {
				return err
			}
		}
		return txn.Set([]byte{pVersion}, []byte{layoutInline})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r := openStore(t, dir, testOptions(t))
	for _, rec := range old {
		mustHave(t, r, rec)
	}
	more := putChain(t, r, 20, 5, "new")
	for _, rec := range more {
		mustHave(t, r, rec)
	}
	err = r.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{pVersion})
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 1 || v[0] != layoutVersion {
				t.Errorf("layout %x after opening with the record log, want %d", v, layoutVersion)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenLog: whatever a crash or a damaged disk left in the segment and
// the checkpoint, opening the log never panics, and what it replays lies
// inside the segment and reads back.
func FuzzOpenLog(f *testing.F) {
	good := appendLogEntry(nil, 0, 1, 1, 1, []logRecord{{cid: []byte("c"), env: []byte("envelope")}})
	f.Add(good, []byte{})
	f.Add(append(good, appendLogEntry(nil, 0, 1, 2, 1, []logRecord{{cid: []byte("d"), env: []byte("e")}})...), []byte{})
	f.Add(good, make([]byte, 40))
	f.Fuzz(func(t *testing.T, seg, ckpt []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(ckpt) == 0 {
			// A good checkpoint at the start, salt 0.
			if err := writeCheckpoint(dir, checkpointState{position{1, 0, 1}, 0}); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(dir, checkpointName), ckpt, 0o600); err != nil {
			t.Fatal(err)
		}
		l, recs, err := openLog(dir, 1<<20, slog.New(slog.DiscardHandler))
		if err != nil {
			return
		}
		defer l.close(false)
		for _, r := range recs {
			if r.loc.seg == 1 && r.loc.off+uint64(r.loc.len) > uint64(len(seg)) {
				t.Fatalf("record at %d+%d beyond a segment of %d bytes", r.loc.off, r.loc.len, len(seg))
			}
			got, err := l.read(r.loc)
			if err != nil || !bytes.Equal(got, r.env) {
				t.Fatalf("record read back as %q (%v), replayed as %q", got, err, r.env)
			}
		}
	})
}

// TestLogDamagedInTheMiddle: a byte flipped in an entry with whole
// entries after it is not a crash's doing. Replaying on past it would
// skip records and then write over them, so the store refuses to open and
// says where the damage is.
func TestLogDamagedInTheMiddle(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	putChain(t, s, 100, 10, "middle")

	lost := t.TempDir()
	logFiles(t, dir, lost, false)
	seg := filepath.Join(lost, segmentName(1))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], 2000); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], 2000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, err = Open(lost, testOptions(t))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open after damage in the middle of the log: %v, want ErrCorrupt", err)
	}
	for _, want := range []string{seg, "is damaged at offset", "Restore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestLogFailedSegment: when the next segment cannot be made (a full
// disk, here a directory in the way), writes fail with the reason, go on
// once it can be made, and Close still returns.
func TestLogFailedSegment(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.LogSegmentSize = 1 << 20
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, segmentName(2)+".new", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	a := newAuthor(t)
	var failed error
	for i := 0; i < 5000 && failed == nil; i++ {
		_, failed = s.Put(a.next(t, testChannel("full"), protocol.KindNote, int64(i+1), note(strings.Repeat("y", 400))))
	}
	if failed == nil {
		t.Fatal("5000 records written with no room for a second segment")
	}
	t.Logf("the write that failed: %v", failed)
	// The disk has room again: writes go on.
	if err := os.RemoveAll(filepath.Join(dir, segmentName(2)+".new")); err != nil {
		t.Fatal(err)
	}
	after := a.next(t, testChannel("full"), protocol.KindNote, 9999, note("after"))
	if _, err := s.Put(after); err != nil {
		t.Fatalf("a write once the segment can be made: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs after a segment could not be made")
	}
}

// TestLogSegmentSize: new segments take the configured size, whatever the
// size of the segment the log goes on in.
func TestLogSegmentSize(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.LogSegmentSize = 1 << 20
	s := openStore(t, dir, o)
	putChain(t, s, 10, 10, "size")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The current segment shrinks (made by an older setting, or cut).
	if err := os.Truncate(filepath.Join(dir, segmentName(1)), 8<<10); err != nil {
		t.Fatal(err)
	}
	r := openStore(t, dir, o)
	putChain(t, r, 300, 10, strings.Repeat("z", 300))
	segs, _ := filepath.Glob(filepath.Join(dir, "records-*.log"))
	for _, p := range segs[1:] {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != o.LogSegmentSize {
			t.Errorf("%s is %d bytes, want %d", filepath.Base(p), st.Size(), o.LogSegmentSize)
		}
	}
}

// TestLogUnsyncedEntriesTorn: two entries were written and neither synced
// when the power went (group commit syncs them together); only the second
// reached the disk whole. Neither was acknowledged, so the log is cut
// before them, not refused. Had the second said the first was durable,
// the first's damage would not be a crash's doing.
func TestLogUnsyncedEntriesTorn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		behind uint32 // of the second entry
		refuse bool
	}{
		{"neither synced", 1, false},
		{"first said durable", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testOptions(t))
			putChain(t, s, 20, 10, "synced")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			ck, err := readCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			e1 := appendLogEntry(nil, ck.salt, ck.seg, ck.lsn, 0, []logRecord{{cid: []byte("c1"), env: bytes.Repeat([]byte("a"), 600)}})
			e2 := appendLogEntry(nil, ck.salt, ck.seg, ck.lsn+1, tc.behind, []logRecord{{cid: []byte("c2"), env: bytes.Repeat([]byte("b"), 600)}})
			torn := bytes.Clone(e1)
			clear(torn[:512]) // the first sector never made it
			f, err := os.OpenFile(filepath.Join(dir, segmentName(ck.seg)), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(append(torn, e2...), int64(ck.off)); err != nil {
				t.Fatal(err)
			}
			f.Close()

			o, log := logged(t)
			r, err := Open(dir, o)
			if tc.refuse {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("open: %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open after a torn unsynced tail: %v", err)
			}
			defer r.Close()
			if !strings.Contains(log.String(), "cut off") {
				t.Errorf("the cut is not logged: %s", log)
			}
			if r.Count() != 20 {
				t.Errorf("count %d, want 20", r.Count())
			}
			more := putChain(t, r, 5, 5, "after")
			for _, rec := range more {
				mustHave(t, r, rec)
			}
		})
	}
}
