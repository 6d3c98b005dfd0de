package store

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// TestJournalReplaysLostWrites: the machine goes down and of the store's
// files only the journal reached the disk, since Badger's writes are not
// synced. Opening the store writes every record again, with the same
// indexes and heads.
func TestJournalReplaysLostWrites(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	recs := putChain(t, s, 300, 7, "replayed")
	want := dump(t, s)

	lost := t.TempDir()
	copyFile(t, filepath.Join(dir, journalName), filepath.Join(lost, journalName))
	o, log := logged(t)
	r := openStore(t, lost, o)
	sameDump(t, dump(t, r), want)
	if r.Count() != int64(len(recs)) {
		t.Errorf("count %d after replay, want %d", r.Count(), len(recs))
	}
	if !strings.Contains(log.String(), "stored=300") {
		t.Errorf("replay log does not say 300 records were stored again: %s", log)
	}
	for _, rec := range recs {
		got, err := r.Get(rec.CID)
		if err != nil {
			t.Fatalf("get %s after replay: %v", rec.CID, err)
		}
		if !bytes.Equal(got.Envelope, rec.Envelope) {
			t.Fatalf("%s: a different envelope after replay", rec.CID)
		}
	}
}

// TestJournalRepairsLostValues: the index entries reached the disk but the
// values in the value log did not. Opening the store gives every record
// its value again.
func TestJournalRepairsLostValues(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	recs := putChain(t, s, 200, 10, "repaired")
	want := dump(t, s)

	lost := t.TempDir()
	copyDir(t, dir, lost)
	vlogs, _ := filepath.Glob(filepath.Join(lost, "*.vlog"))
	if len(vlogs) == 0 {
		t.Fatal("no value-log file to damage")
	}
	for _, v := range vlogs {
		// The value log's header survives; what follows it is zeros,
		// as after a crash that lost its data pages.
		st, err := os.Stat(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(v, 20); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(v, st.Size()); err != nil {
			t.Fatal(err)
		}
	}
	o, log := logged(t)
	r := openStore(t, lost, o)
	if !strings.Contains(log.String(), "repaired=") || strings.Contains(log.String(), "repaired=0\n") {
		t.Errorf("replay log does not say records were repaired: %s", log)
	}
	t.Logf("replay: %s", strings.TrimSpace(log.String()))
	sameDump(t, dump(t, r), want)
	for _, rec := range recs {
		got, err := r.Get(rec.CID)
		if err != nil {
			t.Fatalf("get %s after repair: %v", rec.CID, err)
		}
		if !bytes.Equal(got.Envelope, rec.Envelope) {
			t.Fatalf("%s: a different envelope after repair", rec.CID)
		}
	}
}

// TestJournalCheckpoints fills a small journal's halves several times over:
// writes go on through the checkpoints, a crash copy opens with every
// record, and a clean reopen replays nothing.
func TestJournalCheckpoints(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.JournalSize = 1 << 20
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	recs := putChain(t, s, 4000, 50, strings.Repeat("x", 200))
	s.j.mu.Lock()
	epoch := s.j.epoch
	s.j.mu.Unlock()
	if epoch < 4 {
		t.Errorf("epoch %d after %d records: the halves were not switched", epoch, len(recs))
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
	o2.JournalSize = o.JournalSize
	r := openStore(t, dir, o2)
	if log.Len() > 0 {
		t.Errorf("a clean reopen logged: %s", log)
	}
	sameDump(t, dump(t, r), want)
}

// TestJournalTornTail: the last entry was being written when the machine
// went down. Its batch was never acknowledged; the batches before it are
// all replayed.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	recs := putChain(t, s, 100, 10, "torn")

	lost := t.TempDir()
	jp := filepath.Join(lost, journalName)
	copyFile(t, filepath.Join(dir, journalName), jp)
	s.j.mu.Lock()
	end := journalHeader + s.j.off // the end of the last entry, in half 0
	s.j.mu.Unlock()
	f, err := os.OpenFile(jp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff}, end-3); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := openStore(t, lost, testOptions(t))
	if got, want := r.Count(), int64(len(recs)-10); got != want {
		t.Errorf("%d records after a torn last entry, want %d", got, want)
	}
	mustHead(t, r, testChannel("journal"), recs[0].Record.Author, 90)
}

// TestJournalDamagedHeader: a journal whose header does not check out is
// not replayed blindly; the error names the file and what to do.
func TestJournalDamagedHeader(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	putChain(t, s, 10, 10, "header")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	jp := filepath.Join(dir, journalName)
	f, err := os.OpenFile(jp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage!"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(dir, testOptions(t))
	if err == nil {
		t.Fatal("a store with a damaged journal header opened")
	}
	for _, want := range []string{jp, "header is damaged", "move the file away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestJournalEntryRoundTrip checks the entry encoding against its parser.
func TestJournalEntryRoundTrip(t *testing.T) {
	recs := []journalRecord{{cid: []byte("cid-1"), env: []byte("envelope one")}, {cid: []byte("c2"), env: bytes.Repeat([]byte{7}, 1000)}}
	b := appendJournalEntry(nil, 3, 42, recs)
	epoch, lsn, got, n, ok := parseJournalEntry(append(b, 0, 0, 0))
	if !ok || epoch != 3 || lsn != 42 || n != len(b) || len(got) != 2 {
		t.Fatalf("parse: ok %v epoch %d lsn %d n %d/%d recs %d", ok, epoch, lsn, n, len(b), len(got))
	}
	for i := range recs {
		if !bytes.Equal(got[i].cid, recs[i].cid) || !bytes.Equal(got[i].env, recs[i].env) {
			t.Errorf("record %d differs", i)
		}
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x10
		if _, _, _, _, ok := parseJournalEntry(bad); ok {
			t.Fatalf("an entry with byte %d flipped parses", i)
		}
	}
}

// FuzzJournalEntry: the parser of journal entries, which reads what is on
// the disk after a crash, never panics, and what it accepts encodes back
// to the same bytes.
func FuzzJournalEntry(f *testing.F) {
	f.Add(appendJournalEntry(nil, 1, 1, []journalRecord{{cid: []byte("c"), env: []byte("e")}}))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		epoch, lsn, recs, n, ok := parseJournalEntry(b)
		if !ok {
			return
		}
		if n > len(b) {
			t.Fatalf("entry of %d bytes in %d", n, len(b))
		}
		again := appendJournalEntry(nil, epoch, lsn, recs)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded entry differs")
		}
	})
}
