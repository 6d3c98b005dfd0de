package protocol

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestHeadsMessageRoundTrip(t *testing.T) {
	_, a := testKey(t, 50)
	_, b := testKey(t, 51)
	m := &HeadsMessage{Channel: testChannel, Heads: Heads{a: 7, b: 0}, Tips: map[peer.ID]cid.Cid{a: testChannel}}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHeadsMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Channel != m.Channel || !maps.Equal(got.Heads, m.Heads) || !maps.Equal(got.Tips, m.Tips) {
		t.Fatalf("got %+v, want %+v", got, m)
	}
	empty, _ := (&HeadsMessage{Channel: testChannel}).Encode()
	if got, err := DecodeHeadsMessage(empty); err != nil || len(got.Heads) != 0 {
		t.Fatalf("empty heads: %+v %v", got, err)
	}
}

func TestHeadsMessageRefuses(t *testing.T) {
	_, a := testKey(t, 52)
	_, b := testKey(t, 53)
	lo, hi := a, b
	if hi < lo {
		lo, hi = hi, lo
	}
	enc := func(v any) []byte {
		out, err := EncodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pair := func(p peer.ID, seq int64) []any { return []any{[]byte(p), seq} }
	cases := map[string][]byte{
		"not a map":       enc([]any{}),
		"extra field":     enc(map[string]any{"c": testChannel, "h": []any{}, "x": int64(1)}),
		"channel as text": enc(map[string]any{"c": "bafy", "h": []any{}}),
		"negative seq":    enc(map[string]any{"c": testChannel, "h": []any{pair(a, -1)}}),
		"bad peer":        enc(map[string]any{"c": testChannel, "h": []any{[]any{[]byte{1, 2}, int64(1)}}}),
		"out of order":    enc(map[string]any{"c": testChannel, "h": []any{pair(hi, 1), pair(lo, 1)}}),
		"repeated":        enc(map[string]any{"c": testChannel, "h": []any{pair(lo, 1), pair(lo, 2)}}),
		"short pair":      enc(map[string]any{"c": testChannel, "h": []any{[]any{[]byte(a)}}}),
		"garbage":         {0xff, 0x00},
		"trailing":        append(enc(map[string]any{"c": testChannel, "h": []any{}}), 0),
	}
	for name, b := range cases {
		if _, err := DecodeHeadsMessage(b); err == nil {
			t.Errorf("%s: decoded", name)
		} else if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v is not ErrMalformed", name, err)
		}
	}
}

// FuzzHeadsMessage: the sync request decoder never panics, and whatever it
// accepts re-encodes to the same bytes.
func FuzzHeadsMessage(f *testing.F) {
	_, a := testKey(f, 54)
	seed, _ := (&HeadsMessage{Channel: testChannel, Heads: Heads{a: 3}}).Encode()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeHeadsMessage(b)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding changed the bytes")
		}
	})
}
