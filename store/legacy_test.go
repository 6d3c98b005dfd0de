package store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

// The fixture testdata/layout2.tar.gz was written by the store as it was
// before the record log went (commit ff8303e), with 1 MiB segments and
// memtables:
//
//	clean/       a store closed cleanly: Badger holds pointers into the log
//	lost/        the same store's log alone, with a checkpoint at its
//	             start: a machine went down and none of Badger's unsynced
//	             writes reached the disk
//	expect.json  the records' CIDs, and every key and value of clean/ (hex;
//	             records by their envelopes) before it was closed
type layout2Expect struct {
	CIDs []string          `json:"cids"`
	Dump map[string]string `json:"dump"`
}

// unpackLayout2 extracts the fixture into a temp dir.
func unpackLayout2(t testing.TB) (string, layout2Expect) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "layout2.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, io.LimitReader(tr, 64<<20)); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	var want layout2Expect
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

// logged returns options whose logger writes into the buffer returned.
func logged(t testing.TB) (Options, *bytes.Buffer) {
	o := testOptions(t)
	var buf bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return o, &buf
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// logLeft lists the record log's files left in dir.
func logLeft(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "records*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkMigrated checks that s holds every record of the fixture, every
// envelope in Badger, and the same keys and values as the store before
// it was moved under the prefixes named.
func checkMigrated(t *testing.T, s *Store, want layout2Expect, prefixes string) {
	t.Helper()
	for _, c := range want.CIDs {
		id, err := cid.Decode(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(id); err != nil {
			t.Fatalf("record %s after the move: %v", c, err)
		}
	}
	if s.Count() != int64(len(want.CIDs)) {
		t.Errorf("count %d, want %d", s.Count(), len(want.CIDs))
	}
	got := dump(t, s)
	n := 0
	for hk, hv := range want.Dump {
		k, _ := hex.DecodeString(hk)
		if !strings.ContainsRune(prefixes, rune(k[0])) {
			continue
		}
		n++
		v, _ := hex.DecodeString(hv)
		if g, ok := got[string(k)]; !ok || g != string(v) {
			t.Errorf("key %x: %x after the move, want %x", k, g, v)
		}
	}
	if n < len(want.CIDs) {
		t.Fatalf("compared %d keys only", n)
	}
	pointers := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRecord}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if _, ok := parsePointer(v); ok {
				pointers++
			}
		}
		return nil
	})
	if err != nil || pointers != 0 {
		t.Fatalf("%d pointers into the log left (%v)", pointers, err)
	}
}

// TestLayout2Moved: a store written with the record log opens with every
// envelope moved into Badger, the same indexes, and the log's files gone;
// it reopens as it is and takes new records.
func TestLayout2Moved(t *testing.T) {
	dir, want := unpackLayout2(t)
	clean := filepath.Join(dir, "clean")
	o, log := logged(t)
	s := openStore(t, clean, o)
	checkMigrated(t, s, want, "rschkbfm")
	if left := logLeft(t, clean); len(left) != 0 {
		t.Errorf("log files left: %v", left)
	}
	if !strings.Contains(log.String(), "moved=210") {
		t.Errorf("the log does not say 210 envelopes moved: %s", log)
	}
	if v, err := s.GetMeta("config", "profile"); err != nil || string(v) != `{"name":"Hanbit"}` {
		t.Errorf("settings after the move: %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, clean, testOptions(t))
	checkMigrated(t, s, want, "rschkbfm")
	a := newAuthor(t)
	mustPut(t, s, a.next(t, testChannel("after"), "note", 1, note("after the move")), Stored)
}

// TestLayout2LostBadger: the machine went down and none of Badger's
// writes reached the disk, only the log's: every record is indexed again
// from the log and moved, the same indexes as before.
func TestLayout2LostBadger(t *testing.T) {
	dir, want := unpackLayout2(t)
	lost := filepath.Join(dir, "lost")
	o, log := logged(t)
	s := openStore(t, lost, o)
	checkMigrated(t, s, want, "rschkbf")
	if !strings.Contains(log.String(), "indexed_again=210") {
		t.Errorf("the log does not say 210 records were indexed again: %s", log)
	}
	if left := logLeft(t, lost); len(left) != 0 {
		t.Errorf("log files left: %v", left)
	}
}

// TestLayout2MoveCutShort: a move that stops in the middle (here after two
// of five chunks were committed) starts again at the next open and loses
// nothing; one cut short after it marked the store, with only the
// deletion left, finishes it.
func TestLayout2MoveCutShort(t *testing.T) {
	dir, want := unpackLayout2(t)
	clean := filepath.Join(dir, "clean")
	saved := t.TempDir()
	for _, p := range logLeft(t, clean) {
		copyFile(t, p, filepath.Join(saved, filepath.Base(p)))
	}
	inlineChunk = 50
	inlineFault = func(chunk int) error {
		if chunk == 2 {
			return errors.New("the machine went down")
		}
		return nil
	}
	t.Cleanup(func() { inlineChunk, inlineFault = 1000, nil })
	if _, err := Open(clean, testOptions(t)); err == nil || !strings.Contains(err.Error(), "the machine went down") {
		t.Fatalf("open with a fault in the move: %v", err)
	}
	if len(logLeft(t, clean)) != 2 {
		t.Fatalf("a move cut short deleted the log: %v", logLeft(t, clean))
	}
	inlineFault = nil
	s := openStore(t, clean, testOptions(t))
	checkMigrated(t, s, want, "rschkbfm")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Put the log back, as if the deletion never ran.
	for _, p := range logLeft(t, saved) {
		copyFile(t, p, filepath.Join(clean, filepath.Base(p)))
	}
	s = openStore(t, clean, testOptions(t))
	checkMigrated(t, s, want, "rschkbfm")
	if left := logLeft(t, clean); len(left) != 0 {
		t.Errorf("log files left after the second open: %v", left)
	}
}

// TestLayout2LogMissing: a store whose envelopes are in a record log that
// is no longer there is refused, with what to do, not opened with records
// it cannot read.
func TestLayout2LogMissing(t *testing.T) {
	dir, _ := unpackLayout2(t)
	clean := filepath.Join(dir, "clean")
	for _, p := range logLeft(t, clean) {
		os.Remove(p)
	}
	_, err := Open(clean, testOptions(t))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "records.checkpoint is missing") || !strings.Contains(err.Error(), "backup") {
		t.Fatalf("open without the log: %v", err)
	}
}

// TestLayout2Damaged: a byte flipped in the middle of the log, with whole
// entries after it that say it was durable, is refused with a message
// that says where, and nothing is deleted.
func TestLayout2Damaged(t *testing.T) {
	dir, _ := unpackLayout2(t)
	lost := filepath.Join(dir, "lost")
	seg := filepath.Join(lost, segmentName(1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[logEntryHead+10] ^= 0xff // inside the first entry's payload
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(lost, testOptions(t))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "damaged at offset 0") {
		t.Fatalf("open of a damaged log: %v", err)
	}
	if len(logLeft(t, lost)) != 2 {
		t.Fatalf("log files after a refused open: %v", logLeft(t, lost))
	}
}

// FuzzLegacyLog: whatever a damaged disk left in a segment and the
// checkpoint, reading the old log never panics and what it returns lies
// inside the segment.
func FuzzLegacyLog(f *testing.F) {
	dir, _ := unpackLayout2(f)
	seg, err := os.ReadFile(filepath.Join(dir, "lost", segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	ckpt, err := os.ReadFile(filepath.Join(dir, "lost", checkpointName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg[:8<<10], ckpt) // the real log's first entries
	f.Add([]byte{}, []byte{})
	f.Add(append([]byte{0x53, 0x53, 0x4c, 0x45}, make([]byte, 60)...), make([]byte, 40))
	f.Fuzz(func(t *testing.T, seg, ckpt []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, checkpointName), ckpt, 0o600); err != nil {
			t.Fatal(err)
		}
		start, salt, err := readCheckpoint(dir)
		if err != nil {
			start, salt = position{1, 0, 1}, 0
		}
		recs, end, err := scanLog(dir, start, salt)
		if err != nil {
			return
		}
		if _, err := damagedAfter(dir, end, salt); err != nil {
			t.Fatal(err)
		}
		files := map[uint64]*os.File{}
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		for _, r := range recs {
			if r.loc.seg == 1 && r.loc.off+uint64(r.loc.len) > uint64(len(seg)) {
				t.Fatalf("record at %d+%d beyond a segment of %d bytes", r.loc.off, r.loc.len, len(seg))
			}
			got, err := readAt(dir, files, r.loc)
			if err != nil || string(got) != string(r.env) {
				t.Fatalf("record read back as %q (%v), scanned as %q", got, err, r.env)
			}
		}
	})
}
