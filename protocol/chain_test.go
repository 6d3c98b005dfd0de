package protocol

import (
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
)

func TestCheckNext(t *testing.T) {
	first := mustSeal(t, 20, testRecord(t, 20, 1, cid.Undef))
	second := mustSeal(t, 20, testRecord(t, 20, 2, first.CID))
	if err := CheckNext(first, second); err != nil {
		t.Fatal(err)
	}
	otherAuthor := mustSeal(t, 21, testRecord(t, 21, 2, first.CID))
	skip := mustSeal(t, 20, testRecord(t, 20, 3, first.CID))
	wrongPrev := mustSeal(t, 20, testRecord(t, 20, 2, Sum([]byte("elsewhere"))))
	r := testRecord(t, 20, 2, first.CID)
	r.Channel = Sum([]byte("another channel"))
	otherChannel := mustSeal(t, 20, r)
	for name, next := range map[string]*Signed{
		"other author": otherAuthor, "seq skipped": skip, "wrong prev": wrongPrev, "other channel": otherChannel,
	} {
		if err := CheckNext(first, next); !errors.Is(err, ErrChain) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestFork(t *testing.T) {
	a := mustSeal(t, 22, testRecord(t, 22, 1, cid.Undef))
	r := testRecord(t, 22, 1, cid.Undef)
	r.Body["note"] = "the other side of the partition"
	b := mustSeal(t, 22, r)
	f, err := OpenFork(a.Envelope, b.Envelope)
	if err != nil {
		t.Fatalf("equivocation not recognised: %v", err)
	}
	if f.A.Key() != f.B.Key() {
		t.Fatal("fork records hold different positions")
	}
	if _, err := OpenFork(a.Envelope, a.Envelope); !errors.Is(err, ErrNotFork) {
		t.Fatalf("a record is no fork of itself: %v", err)
	}
	c := mustSeal(t, 22, testRecord(t, 22, 2, a.CID))
	if _, err := OpenFork(a.Envelope, c.Envelope); !errors.Is(err, ErrNotFork) {
		t.Fatalf("different seqs are no fork: %v", err)
	}
	d := mustSeal(t, 23, testRecord(t, 23, 1, cid.Undef))
	if _, err := OpenFork(a.Envelope, d.Envelope); !errors.Is(err, ErrNotFork) {
		t.Fatalf("different authors are no fork: %v", err)
	}
	tampered := append([]byte(nil), b.Envelope...)
	tampered[len(tampered)-1] ^= 1
	if _, err := OpenFork(a.Envelope, tampered); err == nil {
		t.Fatal("a tampered record counted as evidence")
	}
}

func TestChannelOfGenesis(t *testing.T) {
	_, id := testKey(t, 24)
	g := mustSeal(t, 24, &Record{Author: id, Seq: 1, Kind: KindChannelGenesis, Body: map[string]any{"name": "x"}})
	if g.ChannelOf() != g.CID {
		t.Fatal("a genesis founds the channel named by its CID")
	}
}
