package protocol

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/encoding/protowire"
)

// batchRecords returns n records of one author's chain in a channel.
func batchRecords(tb testing.TB, seed byte, n int) []*Record {
	tb.Helper()
	_, id := testKey(tb, seed)
	ch := Sum([]byte("a channel"))
	recs := make([]*Record, n)
	prev := cid.Undef
	for i := range recs {
		recs[i] = &Record{Channel: ch, Author: id, Seq: uint64(i + 1), Prev: prev, Time: 1795833000000 + int64(i),
			Kind: "note", Body: map[string]any{"text": fmt.Sprintf("기록 %d", i)}}
		b, err := recs[i].Encode()
		if err != nil {
			tb.Fatal(err)
		}
		prev = Sum(b)
	}
	return recs
}

func mustKey(tb testing.TB, seed byte) crypto.PubKey {
	k, _ := testKey(tb, seed)
	return k.GetPublic()
}

func mustSealBatch(tb testing.TB, seed byte, recs []*Record) []*Signed {
	tb.Helper()
	k, _ := testKey(tb, seed)
	out, err := SealBatch(recs, k)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestSealBatch(t *testing.T) {
	k, id := testKey(t, 3)
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 100, 255, 256, 257, MaxBatch} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			recs := batchRecords(t, 3, n)
			batch, err := SealBatch(recs, k)
			if err != nil {
				t.Fatal(err)
			}
			var root []byte
			for i, s := range batch {
				single, err := Seal(recs[i], k)
				if err != nil {
					t.Fatal(err)
				}
				if s.CID != single.CID || !bytes.Equal(s.Bytes, single.Bytes) {
					t.Fatalf("record %d: a batch changes the record", i)
				}
				o, err := Open(s.Envelope)
				if err != nil {
					t.Fatalf("record %d of %d: %v", i, n, err)
				}
				if o.CID != s.CID || o.Signer != id || o.Record.Seq != recs[i].Seq {
					t.Fatalf("record %d opens as another", i)
				}
				if l, err := Load(s.Envelope); err != nil || l.CID != s.CID {
					t.Fatalf("record %d does not load: %v", i, err)
				}
				if signer, err := SignerOf(s.Envelope); err != nil || signer != id {
					t.Fatalf("record %d: SignerOf = %s, %v", i, signer, err)
				}
				if c, err := EnvelopeCID(s.Envelope); err != nil || c != s.CID {
					t.Fatalf("record %d: EnvelopeCID = %s, %v", i, c, err)
				}
				// The proof checks with the library's verifier against
				// the one root of the batch.
				e, err := parseBatchEnvelope(s.Envelope)
				if err != nil {
					t.Fatal(err)
				}
				leaf := merkleHasher.HashLeaf(s.CID.Bytes())
				r, err := proof.RootFromInclusionProof(merkleHasher, uint64(i), uint64(n), leaf, e.proof)
				if err != nil {
					t.Fatal(err)
				}
				if root == nil {
					root = r
				} else if !bytes.Equal(root, r) {
					t.Fatalf("record %d proves another root", i)
				}
				if e.size != uint64(n) || e.index != uint64(i) {
					t.Fatalf("record %d says %d of %d", i, e.index, e.size)
				}
			}
		})
	}
	if _, err := SealBatch(nil, k); err == nil {
		t.Fatal("an empty batch sealed")
	}
	if _, err := SealBatch(batchRecords(t, 3, MaxBatch+1), k); err == nil {
		t.Fatal("a batch over MaxBatch sealed")
	}
}

// TestBatchTampered: a change to any byte of a batch envelope, or to its
// signature alone in an envelope whose batch the memo has seen verify,
// fails to open, and never as the record of another.
func TestBatchTampered(t *testing.T) {
	batch := mustSealBatch(t, 4, batchRecords(t, 4, 6))
	for _, s := range batch {
		if _, err := Open(s.Envelope); err != nil {
			t.Fatal(err)
		}
	}
	env := batch[3].Envelope
	for i := range env {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(env)
			bad[i] ^= bit
			if o, err := Open(bad); err == nil {
				t.Fatalf("byte %d ^ %#x: opened as %s", i, bit, o.CID)
			}
		}
	}
	// Another record's signature bytes, another index, another size.
	e, _ := parseBatchEnvelope(env)
	forged := bytes.Clone(e.sig)
	forged[10] ^= 1
	for name, bad := range map[string][]byte{
		"signature": encodeBatchEnvelope(e.pub, e.payload, forged, e.size, e.index, e.proof),
		"index":     encodeBatchEnvelope(e.pub, e.payload, e.sig, e.size, e.index+1, e.proof),
		"size":      encodeBatchEnvelope(e.pub, e.payload, e.sig, e.size+1, e.index, e.proof),
		"no proof":  encodeBatchEnvelope(e.pub, e.payload, e.sig, e.size, e.index, nil),
		"payload":   encodeBatchEnvelope(e.pub, batch[2].Bytes, e.sig, e.size, e.index, e.proof),
	} {
		if _, err := Open(bad); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	// Signed by another key over the same records: not this batch.
	other := mustSealBatch(t, 5, batchRecords(t, 4, 6))
	o, _ := parseBatchEnvelope(other[3].Envelope)
	if _, err := Open(encodeBatchEnvelope(e.pub, e.payload, o.sig, e.size, e.index, e.proof)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key's signature: %v", err)
	}
}

// TestBatchNotCanonical: only the encoder's form opens.
func TestBatchNotCanonical(t *testing.T) {
	env := mustSealBatch(t, 4, batchRecords(t, 4, 3))[1].Envelope
	e, _ := parseBatchEnvelope(env)
	long := func(v uint64) []byte { // a varint with a redundant byte
		b := protowire.AppendVarint(nil, v)
		b[len(b)-1] |= 0x80
		return append(b, 0)
	}
	cases := map[string][]byte{
		"trailing field": protowire.AppendVarint(protowire.AppendTag(bytes.Clone(env), 11, protowire.VarintType), 1),
		"truncated":      env[:len(env)-1],
		"empty":          {},
	}
	// The size written with a redundant varint byte.
	head := encodeBatchEnvelope(e.pub, e.payload, e.sig, e.size, e.index, e.proof)
	i := bytes.LastIndex(head, protowire.AppendTag(nil, batchSizeField, protowire.VarintType))
	cases["long varint"] = append(append(append([]byte{}, head[:i+1]...), long(e.size)...), head[i+2:]...)
	for name, bad := range cases {
		if _, err := Open(bad); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// A batch envelope is no go-libp2p envelope, and the other way round.
	if _, _, err := record.ConsumeEnvelope(env, EnvelopeDomain); err == nil {
		t.Fatal("a batch envelope passes as a single one")
	}
	single := mustSeal(t, 4, batchRecords(t, 4, 1)[0])
	if isBatchEnvelope(single.Envelope) {
		t.Fatal("a single envelope reads as a batch")
	}
}

// TestMerkleHasher: the allocation-free hasher gives rfc6962's hashes.
func TestMerkleHasher(t *testing.T) {
	lib := rfc6962.DefaultHasher
	for _, leaf := range [][]byte{nil, {1}, bytes.Repeat([]byte{7}, 36), bytes.Repeat([]byte{8}, 64), bytes.Repeat([]byte{9}, 65)} {
		if !bytes.Equal(merkleHasher.HashLeaf(leaf), lib.HashLeaf(leaf)) {
			t.Fatalf("leaf of %d bytes hashes otherwise", len(leaf))
		}
	}
	l, r := lib.HashLeaf([]byte("l")), lib.HashLeaf([]byte("r"))
	for _, c := range [][2][]byte{{l, r}, {r, l}, {l[:5], r}, {nil, nil}} {
		if !bytes.Equal(merkleHasher.HashChildren(c[0], c[1]), lib.HashChildren(c[0], c[1])) {
			t.Fatalf("children of %d and %d bytes hash otherwise", len(c[0]), len(c[1]))
		}
	}
	if !bytes.Equal(merkleHasher.EmptyRoot(), lib.EmptyRoot()) || merkleHasher.Size() != lib.Size() {
		t.Fatal("empty root or size differs")
	}
	// And a tree built with it verifies with the library's own hasher.
	for _, n := range []int{1, 2, 3, 5, 100, 256} {
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = lib.HashLeaf([]byte(fmt.Sprint(i)))
		}
		root, proofs := merkleTree(leaves)
		for i := range leaves {
			if err := proof.VerifyInclusion(lib, uint64(i), uint64(n), leaves[i], proofs[i], root); err != nil {
				t.Fatalf("leaf %d of %d: %v", i, n, err)
			}
		}
	}
}

func TestBatchMemoBounded(t *testing.T) {
	m := newBatchMemo(4, 2)
	key := func(i int) [32]byte { return memoKey([]byte{1}, []byte{byte(i)}, []byte{2}) }
	id := func(i int) peer.ID { return peer.ID(fmt.Sprint(i)) }
	// Entries seen twice reach the main ring, which keeps the newest 4.
	for i := range 10 {
		m.add(key(i), id(i))
		if got, ok := m.get(key(i)); !ok || got != id(i) {
			t.Fatalf("entry %d not held after it was added", i)
		}
	}
	if len(m.main.seen) != 4 || len(m.main.ring) != 4 || len(m.new.seen) > 2 {
		t.Fatalf("memo holds %d (ring %d) and %d on probation", len(m.main.seen), len(m.main.ring), len(m.new.seen))
	}
	for i := range 6 {
		if _, ok := m.main.seen[key(i)]; ok {
			t.Fatalf("entry %d outlived its ring", i)
		}
	}
	// A flood of entries seen once does not push the main ring's out.
	for i := 100; i < 200; i++ {
		m.add(key(i), id(i))
	}
	for i := 6; i < 10; i++ {
		if got, ok := m.get(key(i)); !ok || got != id(i) {
			t.Fatalf("entry %d pushed out by entries seen once", i)
		}
	}
	if len(m.new.seen) != 2 {
		t.Fatalf("%d entries on probation, want 2", len(m.new.seen))
	}
	if memoKey([]byte{1, 2}, []byte{3}, nil) == memoKey([]byte{1}, []byte{2, 3}, nil) {
		t.Fatal("the memo's key runs its parts together")
	}
}

// TestBatchKeyCanonical: a batch envelope whose key field parses to the
// same key but is not libp2p's bytes for it does not open.
func TestBatchKeyCanonical(t *testing.T) {
	env := mustSealBatch(t, 4, batchRecords(t, 4, 2))[0].Envelope
	e, _ := parseBatchEnvelope(env)
	// KeyType (field 1) and Data (field 2) the other way round.
	_, _, n := protowire.ConsumeField(e.pub)
	swapped := append(bytes.Clone(e.pub[n:]), e.pub[:n]...)
	if k, err := crypto.UnmarshalPublicKey(swapped); err != nil || !k.Equals(mustKey(t, 4)) {
		t.Fatalf("the premise: libp2p reads the swapped key as the same key (%v)", err)
	}
	for name, pub := range map[string][]byte{
		"extra field":    protowire.AppendVarint(protowire.AppendTag(bytes.Clone(e.pub), 3, protowire.VarintType), 1),
		"fields swapped": swapped,
	} {
		bad := encodeBatchEnvelope(pub, e.payload, e.sig, e.size, e.index, e.proof)
		if _, err := Open(bad); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A key of another type, in its canonical form, signing correctly.
	secp, _, err := crypto.GenerateSecp256k1Key(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := SealBatch(batchRecords(t, 4, 2), secp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(other[0].Envelope); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("a batch signed by a secp256k1 key: %v", err)
	}
	if !SharesSignature(env) || SharesSignature(mustSealBatch(t, 4, batchRecords(t, 4, 1))[0].Envelope) ||
		SharesSignature(mustSeal(t, 4, batchRecords(t, 4, 1)[0]).Envelope) {
		t.Fatal("SharesSignature is wrong about a batch of 2, a batch of 1 or a single envelope")
	}
}

// TestGoldenBatch pins the batch envelope's bytes: three records of one
// author, sealed together. ed25519 is deterministic, so sealing again
// gives the same bytes.
func TestGoldenBatch(t *testing.T) {
	path := filepath.Join("testdata", "golden-batch.json")
	batch := mustSealBatch(t, 12, batchRecords(t, 12, 3))
	var got []string
	for _, s := range batch {
		got = append(got, hex.EncodeToString(s.Envelope))
	}
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./protocol -run Golden -update to create it)", err)
	}
	var want []string
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d envelopes stored, %d built", len(want), len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("envelope %d changed:\n got %s\nwant %s", i, got[i], want[i])
		}
		env, _ := hex.DecodeString(want[i])
		if s, err := Open(env); err != nil || s.CID != batch[i].CID {
			t.Errorf("stored envelope %d does not open as its record: %v", i, err)
		}
	}
}

func BenchmarkOpenBatch(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		batch := mustSealBatch(b, 6, batchRecords(b, 6, n))
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				verifiedBatches = newBatchMemo(verifiedBatchMemo, memoProbation) // a reader new to the batch
				b.StartTimer()
				for _, s := range batch {
					if _, err := Open(s.Envelope); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/record")
		})
	}
}
