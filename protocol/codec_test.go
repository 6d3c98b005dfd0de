package protocol

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/record"
	mh "github.com/multiformats/go-multihash"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	first := mustSeal(t, 1, testRecord(t, 1, 1, cid.Undef))
	second := mustSeal(t, 1, testRecord(t, 1, 2, first.CID))
	for _, s := range []*Signed{first, second} {
		r, err := Decode(s.Bytes)
		if err != nil {
			t.Fatalf("decode seq %d: %v", s.Record.Seq, err)
		}
		if !reflect.DeepEqual(r, s.Record) {
			t.Fatalf("decoded record differs:\n got %#v\nwant %#v", r, s.Record)
		}
		if got := Sum(s.Bytes); got != s.CID {
			t.Fatalf("CID %s, want %s", got, s.CID)
		}
		if s.CID.Prefix().Codec != cid.DagCBOR || s.CID.Version() != 1 || s.CID.Prefix().MhType != mh.SHA2_256 {
			t.Fatalf("CID prefix %+v is not v1 dag-cbor sha2-256", s.CID.Prefix())
		}
		if !strings.HasPrefix(s.CID.String(), "bafyrei") {
			t.Fatalf("CID %s does not read as base32 dag-cbor", s.CID)
		}
	}
}

// TestIndependentDAGCBOR decodes our bytes with go-ipld-prime's dagcbor codec,
// re-encodes them there, and checks the bytes and CID match.
func TestIndependentDAGCBOR(t *testing.T) {
	first := mustSeal(t, 2, testRecord(t, 2, 1, cid.Undef))
	second := mustSeal(t, 2, testRecord(t, 2, 2, first.CID))
	second.Record.Body["ratio"] = 0.25 // a float, which must travel as 64 bits
	second.Record.Body["blob"] = []byte{0, 1, 2}
	second.Record.Body["neg"] = int64(-1 << 40)
	second = mustSeal(t, 2, second.Record)
	for _, s := range []*Signed{first, second} {
		nb := basicnode.Prototype.Any.NewBuilder()
		if err := dagcbor.Decode(nb, bytes.NewReader(s.Bytes)); err != nil {
			t.Fatalf("go-ipld-prime cannot decode our record: %v", err)
		}
		n := nb.Build()
		var out bytes.Buffer
		if err := dagcbor.Encode(n, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), s.Bytes) {
			t.Fatalf("go-ipld-prime re-encodes differently:\n ours %x\ntheirs %x", s.Bytes, out.Bytes())
		}
		c, err := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA2_256, MhLength: -1}.Sum(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if c != s.CID {
			t.Fatalf("independent CID %s, ours %s", c, s.CID)
		}
		seq, err := n.LookupByString("seq")
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := seq.AsInt(); uint64(v) != s.Record.Seq {
			t.Fatalf("go-ipld-prime reads seq %d, want %d", v, s.Record.Seq)
		}
		if s.Record.Seq == 2 {
			prev, err := n.LookupByString("prev")
			if err != nil {
				t.Fatal(err)
			}
			l, err := prev.AsLink()
			if err != nil {
				t.Fatalf("prev is not a link to go-ipld-prime: %v", err)
			}
			if l.String() != first.CID.String() {
				t.Fatalf("prev link %s, want %s", l, first.CID)
			}
		}
	}
}

// TestEveryBitFlipFailsToOpen flips each bit of an envelope in turn.
func TestEveryBitFlipFailsToOpen(t *testing.T) {
	s := mustSeal(t, 3, testRecord(t, 3, 1, cid.Undef))
	if _, err := Open(s.Envelope); err != nil {
		t.Fatalf("pristine envelope: %v", err)
	}
	if l, err := Load(s.Envelope); err != nil {
		t.Fatal(err)
	} else if got, err := OpenLoaded(l); err != nil || got.CID != s.CID {
		t.Fatalf("OpenLoaded of a pristine envelope: %v", err)
	}
	env := bytes.Clone(s.Envelope)
	for i := range env {
		for bit := range 8 {
			env[i] ^= 1 << bit
			if got, err := Open(env); err == nil {
				t.Fatalf("envelope with byte %d bit %d flipped opened as %s", i, bit, got.CID)
			}
			// What Load decodes without checking, OpenLoaded refuses too.
			if l, err := Load(bytes.Clone(env)); err == nil {
				if got, err := OpenLoaded(l); err == nil {
					t.Fatalf("envelope with byte %d bit %d flipped opened as %s after Load", i, bit, got.CID)
				}
			}
			env[i] ^= 1 << bit
		}
	}
	t.Logf("%d flipped envelopes refused", len(env)*8)
}

func TestOpenChecks(t *testing.T) {
	k1, _ := testKey(t, 4)
	_, id2 := testKey(t, 5)
	r := testRecord(t, 4, 1, cid.Undef)

	good := mustSeal(t, 4, r)
	opened, err := Open(good.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if opened.CID != good.CID || !bytes.Equal(opened.Bytes, good.Bytes) || !reflect.DeepEqual(opened.Record, good.Record) {
		t.Fatal("opened record differs from the sealed one")
	}
	loaded, err := Load(good.Envelope)
	if err != nil || loaded.CID != good.CID || !reflect.DeepEqual(loaded.Record, good.Record) {
		t.Fatalf("Load: %v", err)
	}

	// Seal refuses to sign for somebody else.
	other := *r
	other.Author = id2
	if _, err := Seal(&other, k1); !errors.Is(err, ErrAuthorMismatch) {
		t.Fatalf("seal for another author: %v", err)
	}
	// An envelope whose signer is not the author, built by hand.
	b, err := other.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(sealRaw(t, &payload{b: b}, k1)); !errors.Is(err, ErrAuthorMismatch) {
		t.Fatalf("open of a record signed by a non-author: %v", err)
	}
	// The right payload under another domain is refused.
	if _, err := Open(sealRaw(t, &otherDomain{payload{b: good.Bytes}}, k1)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("open with a foreign domain: %v", err)
	}
	// The right domain with another payload type is refused.
	if _, err := Open(sealRaw(t, &otherCodec{payload{b: good.Bytes}}, k1)); !errors.Is(err, ErrBadEnvelope) {
		t.Fatalf("open with a foreign payload type: %v", err)
	}
	// Trailing data after the protobuf is not canonical.
	if _, err := Open(append(bytes.Clone(good.Envelope), 0x38, 0x01)); err == nil {
		t.Fatal("an envelope with an extra field opened")
	}
	// Too large, before any parsing.
	if _, err := Open(make([]byte, MaxEnvelopeSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized envelope: %v", err)
	}
	for _, bad := range [][]byte{nil, {}, {0x0a}, []byte("hello")} {
		if _, err := Open(bad); err == nil {
			t.Fatalf("garbage %x opened", bad)
		}
		if _, err := Load(bad); err == nil {
			t.Fatalf("garbage %x loaded", bad)
		}
	}
}

type otherDomain struct{ payload }

func (otherDomain) Domain() string { return "libp2p-routing-state" }

type otherCodec struct{ payload }

func (otherCodec) Codec() []byte { return []byte{0x55} }

// sealRaw signs a payload without Seal's checks, as an attacker could.
func sealRaw(t *testing.T, rec record.Record, k crypto.PrivKey) []byte {
	t.Helper()
	env, err := record.Seal(rec, k)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDecodeRejectsNonCanonical feeds the decoder near-misses of a valid
// record: each must be refused.
func TestDecodeRejectsNonCanonical(t *testing.T) {
	_, id := testKey(t, 6)
	valid := func(body any) map[string]any {
		return map[string]any{
			"v": int64(1), "seq": int64(1), "body": body, "kind": "note", "prev": nil,
			"time": int64(5), "links": []any{}, "author": []byte(id), "channel": testChannel,
		}
	}
	base, err := EncodeValue(valid(map[string]any{"text": "hi"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(base); err != nil {
		t.Fatalf("the base record must decode: %v", err)
	}
	enc := func(m map[string]any) []byte {
		b, err := EncodeValue(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	with := func(k string, v any) []byte {
		m := valid(map[string]any{"text": "hi"})
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return enc(m)
	}
	// text "hi" encodes as 62 68 69; the body map as a1 64 74657874 62 6869.
	bodyAt := bytes.Index(base, []byte{0xa1, 0x64, 't', 'e', 'x', 't', 0x62, 'h', 'i'})
	if bodyAt < 0 {
		t.Fatal("body not found in the base encoding")
	}
	splice := func(old, new []byte) []byte {
		return bytes.Replace(base, old, new, 1)
	}
	cases := map[string][]byte{
		"trailing byte":          append(bytes.Clone(base), 0x00),
		"truncated":              base[:len(base)-1],
		"empty":                  {},
		"not a map":              {0x01},
		"version 2":              with("v", int64(2)),
		"seq 0":                  with("seq", int64(0)),
		"seq negative":           with("seq", int64(-1)),
		"seq as text":            with("seq", "1"),
		"prev set at seq 1":      with("prev", testChannel),
		"unknown field":          with("extra", int64(1)),
		"missing kind":           with("kind", nil),
		"missing channel":        with("channel", nil),
		"author not a peer ID":   with("author", []byte{1, 2, 3}),
		"channel as text":        with("channel", testChannel.String()),
		"links not a list":       with("links", map[string]any{}),
		"link without rel":       with("links", []any{map[string]any{"cid": testChannel}}),
		"link with extra key":    with("links", []any{map[string]any{"cid": testChannel, "rel": "x", "z": int64(1)}}),
		"kind with capitals":     with("kind", "Order"),
		"body not a map":         with("body", []any{}),
		"non-minimal int":        splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, []byte{0x64, 't', 'i', 'm', 'e', 0x18, 0x05}),
		"indefinite text":        splice([]byte{0x62, 'h', 'i'}, []byte{0x7f, 0x62, 'h', 'i', 0xff}),
		"indefinite map":         splice([]byte{0xa1, 0x64, 't', 'e', 'x', 't', 0x62, 'h', 'i'}, []byte{0xbf, 0x64, 't', 'e', 'x', 't', 0x62, 'h', 'i', 0xff}),
		"half float":             splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, []byte{0x64, 't', 'i', 'm', 'e', 0xf9, 0x45, 0x00}),
		"single float":           splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, []byte{0x64, 't', 'i', 'm', 'e', 0xfa, 0x40, 0xa0, 0x00, 0x00}),
		"undefined":              splice([]byte{0x64, 'p', 'r', 'e', 'v', 0xf6}, []byte{0x64, 'p', 'r', 'e', 'v', 0xf7}),
		"other tag":              splice([]byte{0x62, 'h', 'i'}, []byte{0xc1, 0x62, 'h', 'i'}),
		"invalid UTF-8":          splice([]byte{0x62, 'h', 'i'}, []byte{0x62, 0xff, 0xfe}),
		"non-NFC text":           splice([]byte{0x62, 'h', 'i'}, append([]byte{0x66}, "\u1100\u1161"...)),
		"text length past end":   splice([]byte{0x62, 'h', 'i'}, []byte{0x7a, 0xff, 0xff, 0xff, 0xff}),
		"huge list":              splice([]byte{0x65, 'l', 'i', 'n', 'k', 's', 0x80}, []byte{0x65, 'l', 'i', 'n', 'k', 's', 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		"keys out of order":      splice([]byte{0x61, 'v', 0x01, 0x63, 's', 'e', 'q', 0x01}, []byte{0x63, 's', 'e', 'q', 0x01, 0x61, 'v', 0x01}),
		"repeated key":           splice([]byte{0x61, 'v', 0x01, 0x63, 's', 'e', 'q', 0x01}, []byte{0x61, 'v', 0x01, 0x61, 'v', 0x01}),
		"integer key":            splice([]byte{0x61, 'v', 0x01}, []byte{0x01, 0x01}),
		"NaN":                    splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, append([]byte{0x64, 't', 'i', 'm', 'e', 0xfb}, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0)),
		"link without 0x00":      splice(append([]byte{0xd8, 0x2a, 0x58, 0x25, 0x00}, testChannel.Bytes()...), append([]byte{0xd8, 0x2a, 0x58, 0x24}, testChannel.Bytes()...)),
		"reserved info 28":       splice([]byte{0x62, 'h', 'i'}, []byte{0x7c}),
		"deep nesting":           deepBody(t, []byte(id), MaxDepth+2),
		"uint beyond int64":      splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, []byte{0x64, 't', 'i', 'm', 'e', 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		"negint beyond int64":    splice([]byte{0x64, 't', 'i', 'm', 'e', 0x05}, []byte{0x64, 't', 'i', 'm', 'e', 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		"negative time":          with("time", int64(-5)),
		"genesis with a channel": func() []byte { m := valid(map[string]any{"name": "x"}); m["kind"] = KindChannelGenesis; return enc(m) }(),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(b, base) {
				t.Fatal("the case did not change the base record")
			}
			if _, err := Decode(b); err == nil {
				t.Fatalf("decoded % x", b)
			} else if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
		})
	}
	big := valid(map[string]any{"text": strings.Repeat("a", MaxRecordSize)})
	if _, err := Decode(enc(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
}

func deepBody(t *testing.T, id []byte, depth int) []byte {
	var v any = "x"
	for range depth {
		v = []any{v}
	}
	// Build the bytes by hand: EncodeValue refuses the depth too.
	b := []byte{0xa9}
	b = appendText(b, "v")
	b = appendInt(b, 1)
	b = appendText(b, "seq")
	b = appendInt(b, 1)
	b = appendText(b, "body")
	b = appendHead(b, majMap, 1)
	b = appendText(b, "d")
	for range depth {
		b = appendHead(b, majArray, 1)
	}
	b = appendText(b, "x")
	for _, kv := range []struct {
		k string
		v []byte
	}{{"kind", appendText(nil, "note")}, {"prev", []byte{0xf6}}, {"time", []byte{0x05}}, {"links", []byte{0x80}}} {
		b = appendText(b, kv.k)
		b = append(b, kv.v...)
	}
	b = appendText(b, "author")
	b = append(appendHead(b, majBytes, uint64(len(id))), id...)
	b = appendText(b, "channel")
	return appendCID(b, testChannel)
}

func TestEncodeRefuses(t *testing.T) {
	cases := map[string]func(r *Record){
		"NaN":           func(r *Record) { r.Body["x"] = math.NaN() },
		"infinity":      func(r *Record) { r.Body["x"] = math.Inf(1) },
		"non-NFC":       func(r *Record) { r.Body["x"] = "\u1100\u1161" },
		"bad UTF-8":     func(r *Record) { r.Body["x"] = "\xff" },
		"unknown type":  func(r *Record) { r.Body["x"] = struct{}{} },
		"uint":          func(r *Record) { r.Body["x"] = uint(3) },
		"undefined CID": func(r *Record) { r.Body["x"] = cid.Undef },
		"no channel":    func(r *Record) { r.Channel = cid.Undef },
		"no prev":       func(r *Record) { r.Seq = 2 },
		"seq 0":         func(r *Record) { r.Seq = 0 },
		"empty rel":     func(r *Record) { r.Links[0].Rel = "" },
		"nil body":      func(r *Record) { r.Body = nil },
		"too large":     func(r *Record) { r.Body["x"] = strings.Repeat("가", MaxRecordSize/3+1) },
		"no author":     func(r *Record) { r.Author = "" },
		"genesis in ch": func(r *Record) { r.Kind = KindChannelGenesis },
		"negative time": func(r *Record) { r.Time = -1 },
		"bad kind":      func(r *Record) { r.Kind = "주문" },
		"non-NFC key":   func(r *Record) { r.Body["\u1100\u1161"] = "x" },
		"deeply nested": func(r *Record) {
			var v any = "x"
			for range MaxDepth + 1 {
				v = []any{v}
			}
			r.Body["x"] = v
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := testRecord(t, 7, 1, cid.Undef)
			mutate(r)
			if b, err := r.Encode(); err == nil {
				t.Fatalf("encoded % x", b[:min(len(b), 32)])
			}
		})
	}
}
