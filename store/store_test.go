package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// --- helpers ---------------------------------------------------------------

func testOptions(t testing.TB) Options {
	o := DefaultOptions()
	o.GCInterval = 0
	o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return o
}

func openStore(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newStore(t testing.TB) *Store {
	return openStore(t, t.TempDir(), testOptions(t))
}

// author signs chains of records, one per channel.
type author struct {
	key  crypto.PrivKey
	id   peer.ID
	seq  map[cid.Cid]uint64
	prev map[cid.Cid]cid.Cid
}

func newAuthor(t testing.TB) *author {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &author{key: k, id: id, seq: map[cid.Cid]uint64{}, prev: map[cid.Cid]cid.Cid{}}
}

func (a *author) seal(t testing.TB, r *protocol.Record) *protocol.Signed {
	t.Helper()
	s, err := protocol.Seal(r, a.key)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return s
}

// next signs the author's next record in ch.
func (a *author) next(t testing.TB, ch cid.Cid, kind string, tm int64, body map[string]any, links ...protocol.Link) *protocol.Signed {
	t.Helper()
	a.seq[ch]++
	r := &protocol.Record{
		Channel: ch, Author: a.id, Seq: a.seq[ch], Prev: a.prev[ch], Time: tm,
		Kind: kind, Links: links, Body: body,
	}
	s := a.seal(t, r)
	a.prev[ch] = s.CID
	return s
}

// variant signs another record with the same channel, author, seq and prev
// as s but a different body.
func (a *author) variant(t testing.TB, s *protocol.Signed, tag string) *protocol.Signed {
	t.Helper()
	r := *s.Record
	r.Body = map[string]any{"text": "variant " + tag}
	return a.seal(t, &r)
}

// withPrev signs a copy of s that names another prev.
func (a *author) withPrev(t testing.TB, s *protocol.Signed, prev cid.Cid) *protocol.Signed {
	t.Helper()
	r := *s.Record
	r.Prev = prev
	return a.seal(t, &r)
}

func note(text string) map[string]any { return map[string]any{"text": text} }

func testChannel(name string) cid.Cid { return protocol.Sum([]byte("channel " + name)) }

func mustPut(t testing.TB, s *Store, r *protocol.Signed, want Result) {
	t.Helper()
	got, err := s.Put(r)
	if err != nil {
		t.Fatalf("put %s: %v", r.CID, err)
	}
	if got != want {
		t.Fatalf("put seq %d %s: %v, want %v", r.Record.Seq, r.CID, got, want)
	}
}

func mustHead(t testing.TB, s *Store, ch cid.Cid, a peer.ID, want uint64) {
	t.Helper()
	got, err := s.Head(ch, a)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("head = %d, want %d", got, want)
	}
}

func cids(recs []*protocol.Signed) []cid.Cid {
	out := make([]cid.Cid, len(recs))
	for i, r := range recs {
		out[i] = r.CID
	}
	return out
}

func sameCIDs(t testing.TB, what string, got, want []cid.Cid) {
	t.Helper()
	if !slices.EqualFunc(got, want, cid.Cid.Equals) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// dump returns every key and value in the database.
func dump(t testing.TB, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); len(k) == 1 && k[0] == pArrivalDone {
				continue // the numbering's epoch: random in each store
			}
			// A record's value is compared by its envelope, wherever
			// it is kept.
			v, err := it.Item().ValueCopy(nil)
			if it.Item().Key()[0] == pRecord {
				v, err = s.envelope(it.Item())
			}
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDump(t testing.TB, a, b map[string]string) {
	t.Helper()
	if len(a) != len(b) {
		t.Errorf("dumps have %d and %d keys", len(a), len(b))
	}
	for k, v := range a {
		if w, ok := b[k]; !ok {
			t.Errorf("key %x only in the first", k)
		} else if v != w {
			t.Errorf("key %x: values differ: %x / %x", k, v, w)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("key %x only in the second", k)
		}
	}
}

// --- tests -----------------------------------------------------------------

func TestPutGetHas(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a := newAuthor(t)
	r := a.next(t, ch, "note", 1000, note("hello"))
	mustPut(t, s, r, Stored)

	got, err := s.Get(r.CID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CID.Equals(r.CID) || !bytes.Equal(got.Envelope, r.Envelope) || !bytes.Equal(got.Bytes, r.Bytes) {
		t.Fatalf("got %v, want %v", got.CID, r.CID)
	}
	if got.Record.Body["text"] != "hello" || got.Record.Seq != 1 || got.Record.Author != a.id {
		t.Fatalf("decoded record differs: %+v", got.Record)
	}
	if ok, err := s.Has(r.CID); err != nil || !ok {
		t.Fatalf("has = %v, %v", ok, err)
	}
	other := protocol.Sum([]byte("nothing"))
	if _, err := s.Get(other); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(cid.Undef); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get undef: %v, want ErrNotFound", err)
	}
	if ok, err := s.Has(other); err != nil || ok {
		t.Fatalf("has missing = %v, %v", ok, err)
	}
	if s.Count() != 1 {
		t.Fatalf("count = %d", s.Count())
	}
	chans, err := s.Channels()
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "channels", chans, []cid.Cid{ch})
}

func TestDuplicateIsNoop(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a := newAuthor(t)
	r1 := a.next(t, ch, "note", 1, note("one"))
	r2 := a.next(t, ch, "note", 2, note("two"), protocol.Link{Rel: "supersedes", CID: r1.CID})
	mustPut(t, s, r1, Stored)
	mustPut(t, s, r2, Stored)
	before := dump(t, s)
	mustPut(t, s, r1, Duplicate)
	mustPut(t, s, r2, Duplicate)
	res, err := s.PutBatch([]*protocol.Signed{r2, r1, r2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res, []Result{Duplicate, Duplicate, Duplicate}) {
		t.Fatalf("batch results %v", res)
	}
	sameDump(t, before, dump(t, s))
	if s.Count() != 2 {
		t.Fatalf("count = %d", s.Count())
	}
}

func TestForkKeptAsEvidence(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a := newAuthor(t)
	r1 := a.next(t, ch, "note", 1, note("one"))
	r2 := a.next(t, ch, "note", 2, note("two"), protocol.Link{Rel: "supersedes", CID: r1.CID})
	r3 := a.next(t, ch, "note", 3, note("three"))
	f2 := a.variant(t, r2, "b") // same seq 2, same prev, other body
	f2.Record.Links = []protocol.Link{{Rel: "supersedes", CID: r1.CID}}
	f2 = a.seal(t, f2.Record)

	for _, r := range []*protocol.Signed{r1, r2, r3} {
		mustPut(t, s, r, Stored)
	}
	mustHead(t, s, ch, a.id, 3)
	mustPut(t, s, f2, Forked)
	mustPut(t, s, f2, Duplicate)

	// The fork is kept by CID...
	got, err := s.Get(f2.CID)
	if err != nil || !got.CID.Equals(f2.CID) {
		t.Fatalf("get fork: %v", err)
	}
	// ...but never replaces the first.
	mustHead(t, s, ch, a.id, 3)
	recs, err := s.ByAuthor(ch, a.id, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "seq 2", cids(recs), []cid.Cid{r2.CID})
	page, _, err := s.ByChannel(ch, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "channel", cids(page), []cid.Cid{r3.CID, r2.CID, r1.CID})
	bl, err := s.Backlinks(r1.CID)
	if err != nil {
		t.Fatal(err)
	}
	if len(bl) != 1 || !bl[0].From.Equals(r2.CID) {
		t.Fatalf("backlinks %v", bl)
	}

	forks, err := s.Forks(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(forks) != 1 {
		t.Fatalf("forks %+v", forks)
	}
	f := forks[0]
	want := []cid.Cid{r2.CID, f2.CID}
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].Bytes(), want[j].Bytes()) < 0 })
	if !f.Channel.Equals(ch) || f.Author != a.id || f.Seq != 2 {
		t.Fatalf("fork %+v", f)
	}
	sameCIDs(t, "fork", f.CIDs, want)
	if s.Count() != 4 {
		t.Fatalf("count = %d", s.Count())
	}
	// A third record for seq 2 joins the evidence.
	f3 := a.variant(t, r2, "c")
	mustPut(t, s, f3, Forked)
	forks, _ = s.Forks(ch)
	if len(forks) != 1 || len(forks[0].CIDs) != 3 {
		t.Fatalf("forks %+v", forks)
	}
}

func TestForkBeforeGapFills(t *testing.T) {
	// The fork arrives while its seq is beyond the head: the first record
	// stored still holds the slot, and the head stays put when the gap fills.
	s := newStore(t)
	ch := testChannel("a")
	a := newAuthor(t)
	r1 := a.next(t, ch, "note", 1, note("one"))
	r2 := a.next(t, ch, "note", 2, note("two"))
	r3 := a.next(t, ch, "note", 3, note("three"))
	f3 := a.variant(t, r3, "x")
	mustPut(t, s, r3, Stored)
	mustPut(t, s, f3, Forked)
	mustPut(t, s, r2, Stored)
	mustHead(t, s, ch, a.id, 0)
	mustPut(t, s, r1, Stored)
	mustHead(t, s, ch, a.id, 3)
}

func TestOutOfOrderHeads(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a, b := newAuthor(t), newAuthor(t)
	var ra []*protocol.Signed
	for i := range 6 {
		ra = append(ra, a.next(t, ch, "note", int64(i), note(fmt.Sprint(i))))
	}
	rb1 := b.next(t, ch, "note", 1, note("b1"))

	mustPut(t, s, ra[2], Stored) // seq 3
	mustHead(t, s, ch, a.id, 0)
	mustPut(t, s, ra[4], Stored) // seq 5
	mustPut(t, s, ra[1], Stored) // seq 2
	mustHead(t, s, ch, a.id, 0)
	heads, err := s.Heads(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 1 || heads[a.id] != 0 {
		t.Fatalf("heads %v", heads)
	}
	mustPut(t, s, ra[0], Stored) // seq 1: 1..3 contiguous
	mustHead(t, s, ch, a.id, 3)
	mustPut(t, s, ra[3], Stored) // seq 4: 1..5
	mustHead(t, s, ch, a.id, 5)
	mustPut(t, s, ra[5], Stored)
	mustHead(t, s, ch, a.id, 6)
	mustPut(t, s, rb1, Stored)
	heads, err = s.Heads(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 2 || heads[a.id] != 6 || heads[b.id] != 1 {
		t.Fatalf("heads %v", heads)
	}
	mustHead(t, s, testChannel("other"), a.id, 0)
	forks, err := s.Forks(ch)
	if err != nil || len(forks) != 0 {
		t.Fatalf("forks %v, %v", forks, err)
	}
}

func TestBrokenPrevStopsHead(t *testing.T) {
	ch := testChannel("a")
	a := newAuthor(t)
	r1 := a.next(t, ch, "note", 1, note("one"))
	r2 := a.next(t, ch, "note", 2, note("two"))
	r3 := a.next(t, ch, "note", 3, note("three"))
	other := a.variant(t, r2, "hidden") // the seq 2 the broken record builds on
	bad3 := a.withPrev(t, r3, other.CID)
	a.prev[ch] = bad3.CID
	r4 := a.next(t, ch, "note", 4, note("four")) // builds on bad3: no second fork

	want := []cid.Cid{r2.CID, bad3.CID}
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i].Bytes(), want[j].Bytes()) < 0 })

	for name, order := range map[string][]*protocol.Signed{
		"in order":       {r1, r2, bad3, r4},
		"broken first":   {bad3, r4, r2, r1},
		"gap fills last": {r1, bad3, r4, r2},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			for _, r := range order {
				mustPut(t, s, r, Stored)
			}
			mustHead(t, s, ch, a.id, 2)
			forks, err := s.Forks(ch)
			if err != nil {
				t.Fatal(err)
			}
			if len(forks) != 1 || forks[0].Seq != 2 {
				t.Fatalf("forks %+v", forks)
			}
			sameCIDs(t, "evidence", forks[0].CIDs, want)
			// The record the broken one names turns up: a fork at seq 2.
			mustPut(t, s, other, Forked)
			mustHead(t, s, ch, a.id, 2)
			forks, _ = s.Forks(ch)
			if len(forks) != 1 || len(forks[0].CIDs) != 3 {
				t.Fatalf("forks %+v", forks)
			}
		})
	}
}

func TestByChannelPagination(t *testing.T) {
	s := newStore(t)
	ch, elsewhere := testChannel("a"), testChannel("b")
	rng := rand.New(rand.NewPCG(1, 2))
	authors := []*author{newAuthor(t), newAuthor(t), newAuthor(t)}
	var all []*protocol.Signed
	for i := range 250 {
		a := authors[i%3]
		// Few distinct times, so that many records tie on time.
		r := a.next(t, ch, "note", int64(1_700_000_000_000+rng.IntN(40)), note(fmt.Sprint(i)))
		all = append(all, r)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	if _, err := s.PutBatch(all); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, authors[0].next(t, elsewhere, "note", 5, note("elsewhere")), Stored)

	want := slices.Clone(all)
	sort.Slice(want, func(i, j int) bool {
		ti, tj := want[i].Record.Time, want[j].Record.Time
		if ti != tj {
			return ti > tj
		}
		return bytes.Compare(want[i].CID.Bytes(), want[j].CID.Bytes()) < 0
	})

	for _, limit := range []int{1, 7, 50, 250, 1000} {
		var got []*protocol.Signed
		cursor := ""
		pages := 0
		for {
			page, next, err := s.ByChannel(ch, limit, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("page of %d, limit %d", len(page), limit)
			}
			got = append(got, page...)
			pages++
			if next == "" {
				break
			}
			if pages > 300 {
				t.Fatal("pagination does not end")
			}
			cursor = next
		}
		sameCIDs(t, fmt.Sprintf("limit %d", limit), cids(got), cids(want))
		if wantPages := (250 + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}

	for _, bad := range []string{"!!!", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, _, err := s.ByChannel(ch, 10, bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
		}
	}
	page, next, err := s.ByChannel(testChannel("none"), 10, "")
	if err != nil || len(page) != 0 || next != "" {
		t.Fatalf("unknown channel: %d records, next %q, %v", len(page), next, err)
	}
}

func TestByAuthor(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a, b := newAuthor(t), newAuthor(t)
	var ra []*protocol.Signed
	for i := range 700 {
		ra = append(ra, a.next(t, ch, "note", int64(i), note(fmt.Sprint(i))))
	}
	// Seq 10 is missing: a gap.
	batch := append(slices.Clone(ra[:9]), ra[10:]...)
	batch = append(batch, b.next(t, ch, "note", 1, note("b")))
	if _, err := s.PutBatch(batch); err != nil {
		t.Fatal(err)
	}
	mustHead(t, s, ch, a.id, 9)

	seqs := func(recs []*protocol.Signed) []uint64 {
		out := []uint64{}
		for _, r := range recs {
			out = append(out, r.Record.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		from, to uint64
		want     []uint64
	}{
		{3, 5, []uint64{3, 4, 5}},
		{0, 3, []uint64{1, 2, 3}},
		{8, 12, []uint64{8, 9, 11, 12}},
		{699, 0, []uint64{699, 700}},
		{700, 700, []uint64{700}},
		{701, 0, []uint64{}},
		{5, 3, []uint64{}},
	} {
		recs, err := s.ByAuthor(ch, a.id, tc.from, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(recs); !slices.Equal(got, tc.want) {
			t.Errorf("ByAuthor(%d, %d) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	all, err := s.ByAuthor(ch, a.id, 1, 0)
	if err != nil || len(all) != 699 {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	recs, err := s.ByAuthor(ch, b.id, 0, 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("b: %d, %v", len(recs), err)
	}

	// ScanAuthor streams the same records across several chunks.
	var scanned []*protocol.Signed
	if err := s.ScanAuthor(ch, a.id, 0, func(r *protocol.Signed) error {
		scanned = append(scanned, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "scan", cids(scanned), cids(all))
	scanned = scanned[:0]
	if err := s.ScanAuthor(ch, a.id, 600, func(r *protocol.Signed) error {
		scanned = append(scanned, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(scanned) != 101 || scanned[0].Record.Seq != 600 {
		t.Fatalf("scan from 600: %d records", len(scanned))
	}
	stop := errors.New("stop")
	n := 0
	err = s.ScanAuthor(ch, a.id, 1, func(*protocol.Signed) error {
		if n++; n == 300 {
			return stop
		}
		return nil
	})
	if err != stop || n != 300 {
		t.Fatalf("scan stopped with %v after %d", err, n)
	}
}

func TestByKind(t *testing.T) {
	s := newStore(t)
	a := newAuthor(t)
	ch1, ch2 := testChannel("1"), testChannel("2")
	var notes, orders []*protocol.Signed
	for i := range 30 {
		ch := ch1
		if i%2 == 1 {
			ch = ch2
		}
		kind := "note"
		if i%3 == 0 {
			kind = "inventory"
		}
		r := a.next(t, ch, kind, int64(1000+i), note(fmt.Sprint(i)))
		mustPut(t, s, r, Stored)
		if kind == "note" {
			notes = append([]*protocol.Signed{r}, notes...)
		} else {
			orders = append([]*protocol.Signed{r}, orders...)
		}
	}
	for kind, want := range map[string][]*protocol.Signed{"note": notes, "inventory": orders, "order": nil} {
		var got []*protocol.Signed
		cursor := ""
		for {
			page, next, err := s.ByKind(kind, 4, cursor)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			cursor = next
		}
		sameCIDs(t, kind, cids(got), cids(want))
	}
}

func TestBacklinks(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	buyer, seller := newAuthor(t), newAuthor(t)
	order := buyer.next(t, ch, "note", 1, note("order"))
	resp := seller.next(t, ch, "note", 2, note("ack"), protocol.Link{Rel: "responds-to", CID: order.CID})
	ship := seller.next(t, ch, "note", 3, note("ship"),
		protocol.Link{Rel: "fulfils", CID: order.CID}, protocol.Link{Rel: "after", CID: resp.CID})
	fix := seller.next(t, ch, "note", 4, note("fix"),
		protocol.Link{Rel: "supersedes", CID: ship.CID}, protocol.Link{Rel: "fulfils", CID: order.CID})
	// Links may point at records this node does not hold.
	for _, r := range []*protocol.Signed{fix, ship, resp} {
		mustPut(t, s, r, Stored)
	}
	bl, err := s.Backlinks(order.CID)
	if err != nil {
		t.Fatal(err)
	}
	want := []Backlink{{"fulfils", fix.CID}, {"fulfils", ship.CID}, {"responds-to", resp.CID}}
	slices.SortFunc(want[:2], func(x, y Backlink) int { return bytes.Compare(x.From.Bytes(), y.From.Bytes()) })
	if !slices.EqualFunc(bl, want, func(x, y Backlink) bool { return x.Rel == y.Rel && x.From.Equals(y.From) }) {
		t.Fatalf("backlinks:\n got %v\nwant %v", bl, want)
	}
	bl, _ = s.Backlinks(ship.CID)
	if len(bl) != 1 || bl[0].Rel != "supersedes" || !bl[0].From.Equals(fix.CID) {
		t.Fatalf("backlinks of ship %v", bl)
	}
	if bl, _ := s.Backlinks(fix.CID); len(bl) != 0 {
		t.Fatalf("backlinks of fix %v", bl)
	}
	// BacklinksOf: the same for several targets at once, in any order;
	// a target without backlinks is left out.
	many, err := s.BacklinksOf([]cid.Cid{fix.CID, ship.CID, order.CID, resp.CID})
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 3 || len(many[fix.CID]) != 0 {
		t.Fatalf("BacklinksOf: %v", many)
	}
	for _, target := range []cid.Cid{order.CID, ship.CID, resp.CID} {
		one, _ := s.Backlinks(target)
		if !slices.EqualFunc(many[target], one, func(x, y Backlink) bool { return x.Rel == y.Rel && x.From.Equals(y.From) }) {
			t.Fatalf("BacklinksOf %s = %v, Backlinks = %v", target, many[target], one)
		}
	}
}

func TestGenesisIndexedUnderItsOwnCID(t *testing.T) {
	s := newStore(t)
	a := newAuthor(t)
	g := a.seal(t, &protocol.Record{
		Author: a.id, Seq: 1, Time: 1, Kind: protocol.KindChannelGenesis,
		Body: map[string]any{"name": "acme-tier1"},
	})
	mustPut(t, s, g, Stored)
	ch := g.CID
	a.seq[ch], a.prev[ch] = 1, g.CID
	r2 := a.next(t, ch, "note", 2, note("first post"))
	mustPut(t, s, r2, Stored)
	mustHead(t, s, ch, a.id, 2)
	chans, err := s.Channels()
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "channels", chans, []cid.Cid{ch})
	page, _, err := s.ByChannel(ch, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "channel", cids(page), []cid.Cid{r2.CID, g.CID})
}

func TestChannels(t *testing.T) {
	s := newStore(t)
	var want []cid.Cid
	for i := range 5 {
		ch := testChannel(fmt.Sprint(i))
		want = append(want, ch)
		for range 3 {
			a := newAuthor(t)
			mustPut(t, s, a.next(t, ch, "note", 1, note("x")), Stored)
		}
	}
	slices.SortFunc(want, func(x, y cid.Cid) int { return bytes.Compare(x.Bytes(), y.Bytes()) })
	got, err := s.Channels()
	if err != nil {
		t.Fatal(err)
	}
	sameCIDs(t, "channels", got, want)
}

// mixedRecords returns records of several authors in two channels with
// duplicates, forks, gaps and a broken prev link.
func mixedRecords(t *testing.T) []*protocol.Signed {
	ch1, ch2 := testChannel("1"), testChannel("2")
	var recs []*protocol.Signed
	for i := range 4 {
		a := newAuthor(t)
		for _, ch := range []cid.Cid{ch1, ch2} {
			var chain []*protocol.Signed
			for j := range 12 {
				var links []protocol.Link
				if j > 0 && j%4 == 0 {
					links = []protocol.Link{{Rel: "supersedes", CID: chain[j-1].CID}}
				}
				kind := []string{"note", "inventory"}[j%2]
				chain = append(chain, a.next(t, ch, kind, int64(1000*i+j), note(fmt.Sprint(i, j)), links...))
			}
			recs = append(recs, chain...)
			switch i {
			case 1: // a fork at seq 5, and seq 5 again
				recs = append(recs, a.variant(t, chain[4], "fork"), chain[4])
			case 2: // a broken link at seq 8, a gap at 11
				recs = append(recs, a.withPrev(t, chain[7], chain[2].CID))
				recs = slices.DeleteFunc(recs, func(r *protocol.Signed) bool { return r == chain[10] })
			case 3: // duplicates
				recs = append(recs, chain[0], chain[11], chain[0])
			}
		}
	}
	return recs
}

func TestBatchMatchesSinglePuts(t *testing.T) {
	recs := mixedRecords(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 6 {
		order := slices.Clone(recs)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

		single := newStore(t)
		var singleRes []Result
		for _, r := range order {
			res, err := single.Put(r)
			if err != nil {
				t.Fatal(err)
			}
			singleRes = append(singleRes, res)
		}

		batched := newStore(t)
		batchRes, err := batched.PutBatch(order)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(singleRes, batchRes) {
			t.Fatalf("round %d: results differ:\nsingle %v\nbatch  %v", round, singleRes, batchRes)
		}

		// Several batches of arbitrary sizes give the same state again.
		chunked := newStore(t)
		for rest := order; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(40))
			if _, err := chunked.PutBatch(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		want := dump(t, single)
		sameDump(t, want, dump(t, batched))
		sameDump(t, want, dump(t, chunked))
		if single.Count() != batched.Count() || single.Count() != chunked.Count() {
			t.Fatalf("counts %d %d %d", single.Count(), batched.Count(), chunked.Count())
		}
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
}

func TestBatchSplitsBigTransactions(t *testing.T) {
	o := testOptions(t)
	o.MemTableSize = 1 << 20 // transactions of at most ~150 kB
	s := openStore(t, t.TempDir(), o)
	ch := testChannel("a")
	a := newAuthor(t)
	var recs []*protocol.Signed
	for i := range 3000 {
		recs = append(recs, a.next(t, ch, "note", int64(i), note(fmt.Sprint(i))))
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	recs = append(recs, recs[:10]...)
	res, err := s.PutBatch(recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := Stored
		if i >= 3000 {
			want = Duplicate
		}
		if r != want {
			t.Fatalf("result %d = %v, want %v", i, r, want)
		}
	}
	mustHead(t, s, ch, a.id, 3000)
	if s.Count() != 3000 {
		t.Fatalf("count %d", s.Count())
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	recs := mixedRecords(t)
	if _, err := s.PutBatch(recs); err != nil {
		t.Fatal(err)
	}
	want := dump(t, s)
	count := s.Count()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Get(recs[0].CID); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if _, err := s.Put(recs[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}

	s2 := openStore(t, dir, o)
	sameDump(t, want, dump(t, s2))
	if s2.Count() != count {
		t.Fatalf("count %d after reopen, want %d", s2.Count(), count)
	}
	if s2.Size() <= 0 {
		t.Fatalf("size %d", s2.Size())
	}
	for _, r := range recs {
		if _, err := s2.Get(r.CID); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEncryption(t *testing.T) {
	const canary = "CANARY-상생-7f3a9c-plaintext-must-not-leak"
	key := bytes.Repeat([]byte{0x42}, 32)
	ch := testChannel("secret")
	a := newAuthor(t)
	var recs []*protocol.Signed
	for i := range 200 {
		recs = append(recs, a.next(t, ch, "note", int64(i), note(fmt.Sprintf("%s %d", canary, i))))
	}

	write := func(dir string, key []byte) {
		o := testOptions(t)
		o.EncryptionKey = key
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[:100] {
			mustPut(t, s, r, Stored)
		}
		if _, err := s.PutBatch(recs[100:]); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	leaks := func(dir string) []string {
		var found []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte("CANARY-상생")) {
				found = append(found, filepath.Base(path))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}

	// Without a key, the grep finds the text: the check below can fail.
	plain := t.TempDir()
	write(plain, nil)
	if len(leaks(plain)) == 0 {
		t.Fatal("canary not found in an unencrypted database: the leak check is blind")
	}

	dir := t.TempDir()
	write(dir, key)
	if found := leaks(dir); len(found) > 0 {
		t.Fatalf("record text in plain in %v", found)
	}

	for name, k := range map[string][]byte{
		"other key":  bytes.Repeat([]byte{0x43}, 32),
		"short key":  key[:16],
		"no key":     nil,
		"bad length": key[:20],
	} {
		o := testOptions(t)
		o.EncryptionKey = k
		if s, err := Open(dir, o); !errors.Is(err, ErrBadKey) {
			if err == nil {
				s.Close()
			}
			t.Errorf("%s: open: %v, want ErrBadKey", name, err)
		}
	}
	o := testOptions(t)
	o.EncryptionKey = key
	if s, err := Open(plain, o); !errors.Is(err, ErrBadKey) {
		if err == nil {
			s.Close()
		}
		t.Errorf("key on a plain database: %v, want ErrBadKey", err)
	}

	s := openStore(t, dir, o)
	for _, r := range recs {
		got, err := s.Get(r.CID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Record.Body["text"] != r.Record.Body["text"] {
			t.Fatalf("body %v", got.Record.Body)
		}
	}
	mustHead(t, s, ch, a.id, 200)
}

func TestConcurrentPuts(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	const workers, perAuthor = 8, 150
	shared := newAuthor(t) // one chain fed by every worker, in random order
	var sharedRecs []*protocol.Signed
	for i := range perAuthor {
		sharedRecs = append(sharedRecs, shared.next(t, ch, "note", int64(i), note(fmt.Sprint(i))))
	}
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(sharedRecs), func(i, j int) {
		sharedRecs[i], sharedRecs[j] = sharedRecs[j], sharedRecs[i]
	})
	own := make([]*author, workers)
	ownRecs := make([][]*protocol.Signed, workers)
	for w := range workers {
		own[w] = newAuthor(t)
		for i := range perAuthor {
			ownRecs[w] = append(ownRecs[w], own[w].next(t, ch, "note", int64(i), note(fmt.Sprint(w, i))))
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perAuthor {
				if _, err := s.Put(ownRecs[w][i]); err != nil {
					errs <- err
					return
				}
				// Every worker also tries every shared record: all but one
				// of the attempts are duplicates.
				if i%2 == 0 {
					if _, err := s.PutBatch(sharedRecs[i : i+2]); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	heads, err := s.Heads(ch)
	if err != nil {
		t.Fatal(err)
	}
	if heads[shared.id] != perAuthor {
		t.Errorf("shared head %d, want %d", heads[shared.id], perAuthor)
	}
	for w := range workers {
		if heads[own[w].id] != perAuthor {
			t.Errorf("worker %d head %d", w, heads[own[w].id])
		}
	}
	if want := int64(perAuthor * (workers + 1)); s.Count() != want {
		t.Errorf("count %d, want %d", s.Count(), want)
	}
	page, _, err := s.ByChannel(ch, 10_000, "")
	if err != nil || len(page) != perAuthor*(workers+1) {
		t.Fatalf("channel holds %d records, %v", len(page), err)
	}
}

func TestInvalidRecords(t *testing.T) {
	s := newStore(t)
	a := newAuthor(t)
	good := a.next(t, testChannel("a"), "note", 1, note("x"))
	noCID := *good
	noCID.CID = cid.Undef
	noEnv := *good
	noEnv.Envelope = nil
	noChan := *good
	rec := *good.Record
	rec.Channel = cid.Undef
	noChan.Record = &rec
	for name, r := range map[string]*protocol.Signed{
		"nil": nil, "no record": {CID: good.CID}, "no CID": &noCID, "no envelope": &noEnv, "no channel": &noChan,
	} {
		if _, err := s.Put(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if _, err := s.PutBatch([]*protocol.Signed{good, r}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s in batch: %v, want ErrInvalid", name, err)
		}
	}
	// A batch with a bad record writes nothing.
	if s.Count() != 0 {
		t.Fatalf("count %d", s.Count())
	}
}

func TestCorruptDataIsAnError(t *testing.T) {
	s := newStore(t)
	ch := testChannel("a")
	a := newAuthor(t)
	r1 := a.next(t, ch, "note", 1, note("one"))
	r2 := a.next(t, ch, "note", 2, note("two"), protocol.Link{Rel: "supersedes", CID: r1.CID})
	mustPut(t, s, r1, Stored)
	mustPut(t, s, r2, Stored)

	set := func(k, v []byte) {
		t.Helper()
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
	corrupt := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", what, err)
		}
	}

	// An envelope that does not decode, and one that decodes to another record.
	set(recordKey(r1.CID), []byte{0xff, 0x00, 0x13})
	_, err := s.Get(r1.CID)
	corrupt("garbage envelope", err)
	set(recordKey(r1.CID), r2.Envelope)
	_, err = s.Get(r1.CID)
	corrupt("swapped envelope", err)
	_, _, err = s.ByChannel(ch, 10, "")
	corrupt("listing", err)

	set(seqKey(ch, a.id, 2), []byte{40, 1, 2})
	_, err = s.ByAuthor(ch, a.id, 0, 0)
	corrupt("seq value", err)
	_, err = s.Put(a.next(t, ch, "note", 3, note("three")))
	corrupt("put over bad seq value", err)

	set(headKey(ch, a.id), []byte{1})
	// Head answers from the store's mirror of heads; a store opened on
	// corrupt data has an empty one.
	s.headsMu.Lock()
	clear(s.heads)
	s.headsMu.Unlock()
	_, err = s.Head(ch, a.id)
	corrupt("head value", err)
	_, err = s.Heads(ch)
	corrupt("heads value", err)

	set(append(backlinkPrefix(r1.CID), 200, 'x'), nil)
	_, err = s.Backlinks(r1.CID)
	corrupt("backlink key", err)

	set(append(forkPrefix(ch), 3, 1, 2, 3), nil)
	_, err = s.Forks(ch)
	corrupt("fork key", err)

	set([]byte{pHead, 5, 1, 2}, nil)
	_, err = s.Channels()
	corrupt("channel key", err)

	set([]byte{pVersion}, []byte{99})
	dir := s.db.Opts().Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testOptions(t)); !errors.Is(err, ErrVersion) {
		t.Fatalf("open: %v, want ErrVersion", err)
	}
}

func TestOptions(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero options: %v", err)
	}
	for name, o := range map[string]Options{
		"negative GC":  {GCInterval: -1},
		"tiny memtab":  {MemTableSize: 1000},
		"huge vlog":    {ValueLogFileSize: 4 << 30},
		"neg cache":    {BlockCacheSize: -1},
		"key length 7": {EncryptionKey: make([]byte, 7)},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("%s: Open accepted", name)
		}
	}
}

func TestValueLogGCRunsAndStops(t *testing.T) {
	o := testOptions(t)
	o.GCInterval = time.Millisecond
	o.ValueLogFileSize = 1 << 20
	s := openStore(t, t.TempDir(), o)
	a := newAuthor(t)
	ch := testChannel("a")
	for i := range 50 {
		mustPut(t, s, a.next(t, ch, "note", int64(i), note("x")), Stored)
		// Settings rewritten: garbage in the value log.
		if err := s.PutMeta("settings", "big", bytes.Repeat([]byte{byte(i)}, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	waitGC := time.Now().Add(30 * time.Second)
	for s.gcRuns.Load() < 3 {
		if time.Now().After(waitGC) {
			t.Fatalf("the value-log GC ran %d times in 30 s", s.gcRuns.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runs := s.gcRuns.Load()
	time.Sleep(20 * time.Millisecond)
	if s.gcRuns.Load() != runs {
		t.Fatalf("the GC ran after Close")
	}
	if v, err := openStore(t, s.dir, o).GetMeta("settings", "big"); err != nil || len(v) != 64<<10 || v[0] != 49 {
		t.Fatalf("settings after the GC: %d bytes, %v", len(v), err)
	}
}

// TestHeadMirror: writers storing one author's chain at once, in any
// order and in batches, leave Head equal to what a fresh open of the
// same data reads from disk.
func TestHeadMirror(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	ch := testChannel("mirror")
	a := newAuthor(t)
	const k = 400
	recs := make([]*protocol.Signed, k)
	for i := range recs {
		recs[i] = a.next(t, ch, "note", int64(i+1), note(fmt.Sprint(i)))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []*protocol.Signed
			for i := len(recs) - 1 - w; i >= 0; i -= 4 { // newest first
				if batch = append(batch, recs[i]); len(batch) == 7 {
					if _, err := s.PutBatch(batch); err != nil {
						t.Error(err)
					}
					batch = batch[:0]
				}
			}
			if _, err := s.PutBatch(batch); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Head(ch, a.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fresh, err := openStore(t, dir, testOptions(t)).Head(ch, a.id)
	if err != nil {
		t.Fatal(err)
	}
	if got != k || fresh != k {
		t.Fatalf("head %d, on a fresh open %d; want %d", got, fresh, k)
	}
}

// TestScanEnvelopes: the raw scan gives what ScanAuthor gives, in the same
// order and chunks, and refuses an envelope that does not hash to its key.
func TestScanEnvelopes(t *testing.T) {
	s := newStore(t)
	ch := testChannel("raw")
	a := newAuthor(t)
	var want []*protocol.Signed
	for i := range scanChunk + 10 {
		r := a.next(t, ch, "note", int64(i+1), note(fmt.Sprint(i)))
		mustPut(t, s, r, Stored)
		want = append(want, r)
	}
	var got []*protocol.Signed
	err := s.ScanEnvelopes(ch, a.id, 3, func(c cid.Cid, env []byte) error {
		r, err := protocol.Load(env)
		if err != nil {
			return err
		}
		if r.CID != c {
			t.Errorf("envelope of %s given as %s", r.CID, c)
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)-2 {
		t.Fatalf("scanned %d records from seq 3, want %d", len(got), len(want)-2)
	}
	for i, r := range got {
		if r.CID != want[i+2].CID {
			t.Fatalf("record %d is %s, want %s", i, r.CID, want[i+2].CID)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(recordKey(want[5].CID), want[6].Envelope) }); err != nil {
		t.Fatal(err)
	}
	err = s.ScanEnvelopes(ch, a.id, 1, func(cid.Cid, []byte) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("scan over a swapped envelope: %v, want ErrCorrupt", err)
	}
}
