package protocol

import (
	"crypto/ed25519"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testKey derives a fixed ed25519 key from a one-byte seed, so that test
// vectors are reproducible.
func testKey(tb testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	tb.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return k, id
}

// testChannel is a fixed channel ID.
var testChannel = Sum([]byte("test channel"))

// orderBody is a realistic order body in the value model.
func orderBody() map[string]any {
	return map[string]any{
		"docId":      "PO-2026-11-0042",
		"docVersion": int64(1),
		"issuedAt":   "2026-11-22T09:30:00+09:00",
		"buyer":      map[string]any{"scheme": "kr-brn", "id": "1248100998", "name": "한빛모터스"},
		"seller":     map[string]any{"scheme": "vendor", "id": "V-10293", "name": "대성정밀"},
		"currency":   "KRW",
		"lines": []any{
			map[string]any{
				"lineId":            "1",
				"item":              map[string]any{"buyerPartNo": "58101-3X000", "description": "브레이크 패드 어셈블리"},
				"quantity":          map[string]any{"value": "1200", "unit": "H87"},
				"requestedDelivery": map[string]any{"date": "2026-11-29"},
				"unitPrice":         map[string]any{"amount": "8350.5", "currency": "KRW"},
			},
		},
	}
}

// testRecord returns an order record of author key at seq, chained to prev.
func testRecord(tb testing.TB, seed byte, seq uint64, prev cid.Cid) *Record {
	tb.Helper()
	_, id := testKey(tb, seed)
	return &Record{
		Channel: testChannel,
		Author:  id,
		Seq:     seq,
		Prev:    prev,
		Time:    1795833000000,
		Kind:    "order",
		Links:   []Link{{Rel: "supersedes", CID: Sum([]byte("old order"))}},
		Body:    orderBody(),
	}
}

func mustSeal(tb testing.TB, seed byte, r *Record) *Signed {
	tb.Helper()
	k, _ := testKey(tb, seed)
	s, err := Seal(r, k)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
