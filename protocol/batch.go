package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/transparency-dev/merkle"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/encoding/protowire"
)

// Batch envelopes: one signature for many records.
//
// A publisher that writes records together signs them together, as
// Hypercore signs the root of its tree on each append: the records' CIDs
// are the leaves of an RFC 6962 Merkle tree, the key signs the tree's size
// and root once, and each record's envelope carries that signature, its
// leaf's index and its inclusion proof. Every envelope still verifies on
// its own, offline; a reader of the whole batch checks one signature (see
// the verified-batch memo below). The record inside, its bytes and its CID
// are what they are in a single envelope: only the envelope differs.
//
// The envelope is the fields of go-libp2p's signed envelope (1 public
// key, 2 payload type, 3 payload, 5 signature) plus 8 batch size, 9 index
// and 10 the proof's hashes, concatenated, in that order and only in that
// form. go-libp2p's parser reads it as an envelope whose signature fails,
// so neither form passes as the other.

// MaxBatch is the most records one batch signature covers.
const MaxBatch = 1024

// batchDomain separates batch signatures from every other use of a key.
const batchDomain = "sangsaeng-record-batch/1"

// Batch envelope protobuf fields beyond go-libp2p's.
const (
	envelopeTypeField  = 2
	envelopeSigField   = 5
	batchSizeField     = 8
	batchIndexField    = 9
	batchProofField    = 10
	merkleHashSize     = sha256.Size
	maxBatchProofDepth = 10 // log2(MaxBatch)
)

// merkleHasher is RFC 6962's SHA-256 hasher (rfc6962.DefaultHasher's
// hashes, byte for byte: TestMerkleHasher) without its allocations: the
// library's makes a hash state and a buffer for every node, a tenth of
// what a receiver allocates per record, and proof.RootFromInclusionProof
// runs it eight times for each.
var merkleHasher merkle.LogHasher = rfc6962Hasher{}

type rfc6962Hasher struct{}

func (rfc6962Hasher) EmptyRoot() []byte { return rfc6962.DefaultHasher.EmptyRoot() }
func (rfc6962Hasher) Size() int         { return sha256.Size }

func (rfc6962Hasher) HashLeaf(leaf []byte) []byte {
	if len(leaf) > 64 {
		return rfc6962.DefaultHasher.HashLeaf(leaf)
	}
	var b [65]byte
	b[0] = rfc6962.RFC6962LeafHashPrefix
	n := 1 + copy(b[1:], leaf)
	h := sha256.Sum256(b[:n])
	return h[:]
}

func (rfc6962Hasher) HashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return rfc6962.DefaultHasher.HashChildren(l, r)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}

// batchMessage is what a batch's key signs: the domain, the tree's size
// and its root.
func batchMessage(size uint64, root []byte) []byte {
	m := make([]byte, 0, len(batchDomain)+1+binary.MaxVarintLen64+len(root))
	m = append(m, batchDomain...)
	m = append(m, 0)
	m = binary.AppendUvarint(m, size)
	return append(m, root...)
}

// SealBatch signs records with key as one batch: one signature over the
// Merkle root of their CIDs, and an envelope per record with its proof. The
// records need not share a channel or an author; the key's authority for
// each is for its author's key log to say, as with SealWith.
func SealBatch(recs []*Record, key crypto.PrivKey) ([]*Signed, error) {
	encoded := make([][]byte, len(recs))
	for i, r := range recs {
		b, err := r.Encode()
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		encoded[i] = b
	}
	return SealBatchEncoded(recs, encoded, key)
}

// SealBatchEncoded is SealBatch for records already encoded: encoded[i]
// must be recs[i].Encode()'s bytes, as a publisher that chains records by
// their CIDs has them.
func SealBatchEncoded(recs []*Record, encoded [][]byte, key crypto.PrivKey) ([]*Signed, error) {
	if len(recs) == 0 || len(recs) > MaxBatch || len(encoded) != len(recs) {
		return nil, fmt.Errorf("seal: a batch holds 1 to %d records, not %d", MaxBatch, len(recs))
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pub, err := crypto.MarshalPublicKey(key.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]*Signed, len(recs))
	leaves := make([][]byte, len(recs))
	for i, r := range recs {
		b := encoded[i]
		if len(b) > MaxRecordSize {
			return nil, fmt.Errorf("seal: record of %d bytes: %w", len(b), ErrTooLarge)
		}
		out[i] = &Signed{Record: r, Bytes: b, CID: Sum(b), Signer: id}
		leaves[i] = merkleHasher.HashLeaf(out[i].CID.Bytes())
	}
	root, proofs := merkleTree(leaves)
	sig, err := key.Sign(batchMessage(uint64(len(recs)), root))
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	for i, s := range out {
		s.Envelope = encodeBatchEnvelope(pub, s.Bytes, sig, uint64(len(recs)), uint64(i), proofs[i])
	}
	return out, nil
}

// merkleTree returns the RFC 6962 root of leaves (leaf hashes) and each
// leaf's inclusion proof, in the order proof.VerifyInclusion reads it. The
// library verifies proofs but builds them only from node IDs over a store
// of hashes; for a batch held in memory this recursion is the whole job.
func merkleTree(leaves [][]byte) ([]byte, [][][]byte) {
	if len(leaves) == 1 {
		return leaves[0], [][][]byte{nil}
	}
	k := 1 // the largest power of two below len(leaves)
	for k*2 < len(leaves) {
		k *= 2
	}
	lr, lp := merkleTree(leaves[:k])
	rr, rp := merkleTree(leaves[k:])
	for i := range lp {
		lp[i] = append(lp[i], rr)
	}
	for i := range rp {
		rp[i] = append(rp[i], lr)
	}
	return merkleHasher.HashChildren(lr, rr), append(lp, rp...)
}

func encodeBatchEnvelope(pub, payload, sig []byte, size, index uint64, proof [][]byte) []byte {
	n := len(pub) + len(payload) + len(sig) + len(proof)*merkleHashSize + 40
	b := make([]byte, 0, n)
	b = protowire.AppendTag(b, envelopeKeyField, protowire.BytesType)
	b = protowire.AppendBytes(b, pub)
	b = protowire.AppendTag(b, envelopeTypeField, protowire.BytesType)
	b = protowire.AppendBytes(b, payloadType)
	b = protowire.AppendTag(b, envelopePayloadField, protowire.BytesType)
	b = protowire.AppendBytes(b, payload)
	b = protowire.AppendTag(b, envelopeSigField, protowire.BytesType)
	b = protowire.AppendBytes(b, sig)
	b = protowire.AppendTag(b, batchSizeField, protowire.VarintType)
	b = protowire.AppendVarint(b, size)
	b = protowire.AppendTag(b, batchIndexField, protowire.VarintType)
	b = protowire.AppendVarint(b, index)
	b = protowire.AppendTag(b, batchProofField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(proof)*merkleHashSize))
	for _, h := range proof {
		b = append(b, h...)
	}
	return b
}

// batchEnvelope is a batch envelope's fields, pointing into its bytes.
type batchEnvelope struct {
	pub, payload, sig []byte
	size, index       uint64
	proof             [][]byte
}

// SharesSignature reports whether env is a batch envelope of more than
// one record: one whose signature other records share, so that reading it
// with the others of its batch costs hashes rather than a signature check
// (the node's quota charges the rest more). It only peeks at the size.
func SharesSignature(env []byte) bool {
	size, _ := batchSize(env)
	return size > 1
}

// isBatchEnvelope reports whether env has a batch size field: whether it
// is to be read as a batch envelope (and refused if it is not one).
func isBatchEnvelope(env []byte) bool {
	_, has := batchSize(env)
	return has
}

// batchSize peeks at env's batch size field: has is whether there is
// one, of any wire type; size its value when it is a varint.
func batchSize(env []byte) (size uint64, has bool) {
	for len(env) > 0 {
		num, typ, n := protowire.ConsumeTag(env)
		if n < 0 {
			return 0, false
		}
		env = env[n:]
		if num == batchSizeField {
			if typ == protowire.VarintType {
				if v, m := protowire.ConsumeVarint(env); m > 0 {
					return v, true
				}
			}
			return 0, true
		}
		if n = protowire.ConsumeFieldValue(num, typ, env); n < 0 {
			return 0, false
		}
		env = env[n:]
	}
	return 0, false
}

// parseBatchEnvelope reads a batch envelope in its one canonical form.
func parseBatchEnvelope(env []byte) (*batchEnvelope, error) {
	bad := func(what string) (*batchEnvelope, error) {
		return nil, fmt.Errorf("%w: batch envelope: %s", ErrBadEnvelope, what)
	}
	var e batchEnvelope
	var ptype, rawProof []byte
	rest := env
	// Each tag, length and number in its one canonical form: the
	// shortest varint (protowire reads longer ones too), so that one
	// record has one batch envelope per proof.
	tag := func(want protowire.Number, typ protowire.Type) bool {
		num, t, n := protowire.ConsumeTag(rest)
		if n < 0 || num != want || t != typ || n != protowire.SizeTag(want) {
			return false
		}
		rest = rest[n:]
		return true
	}
	varint := func() (uint64, bool) {
		v, n := protowire.ConsumeVarint(rest)
		if n < 0 || n != protowire.SizeVarint(v) {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	bytesField := func(want protowire.Number) ([]byte, bool) {
		if !tag(want, protowire.BytesType) {
			return nil, false
		}
		l, ok := varint()
		if !ok || l > uint64(len(rest)) {
			return nil, false
		}
		v := rest[:l]
		rest = rest[l:]
		return v, true
	}
	varintField := func(want protowire.Number) (uint64, bool) {
		if !tag(want, protowire.VarintType) {
			return 0, false
		}
		return varint()
	}
	var ok bool
	if e.pub, ok = bytesField(envelopeKeyField); !ok {
		return bad("no public key first")
	}
	if ptype, ok = bytesField(envelopeTypeField); !ok || !bytes.Equal(ptype, payloadType) {
		return bad("payload type is not dag-cbor")
	}
	if e.payload, ok = bytesField(envelopePayloadField); !ok {
		return bad("no payload")
	}
	if e.sig, ok = bytesField(envelopeSigField); !ok {
		return bad("no signature")
	}
	if e.size, ok = varintField(batchSizeField); !ok || e.size < 1 || e.size > MaxBatch {
		return bad(fmt.Sprintf("batch size not 1 to %d", MaxBatch))
	}
	if e.index, ok = varintField(batchIndexField); !ok || e.index >= e.size {
		return bad("index not within the batch")
	}
	if rawProof, ok = bytesField(batchProofField); !ok || len(rawProof)%merkleHashSize != 0 || len(rawProof) > maxBatchProofDepth*merkleHashSize {
		return bad("proof is not a list of hashes")
	}
	if len(rest) != 0 {
		return bad("bytes after the proof")
	}
	e.proof = make([][]byte, 0, len(rawProof)/merkleHashSize)
	for len(rawProof) > 0 {
		e.proof, rawProof = append(e.proof, rawProof[:merkleHashSize]), rawProof[merkleHashSize:]
	}
	return &e, nil
}

// openBatch verifies a batch envelope's proof and signature and returns
// its signer and payload, and whether the signature was in the memo.
func openBatch(env []byte) (peer.ID, []byte, bool, error) {
	e, err := parseBatchEnvelope(env)
	if err != nil {
		return "", nil, false, err
	}
	leaf := merkleHasher.HashLeaf(Sum(e.payload).Bytes())
	root, err := proof.RootFromInclusionProof(merkleHasher, e.index, e.size, leaf, e.proof)
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: batch envelope: %v", ErrBadEnvelope, err)
	}
	msg := batchMessage(e.size, root)
	k := memoKey(e.pub, msg, e.sig)
	if signer, ok := verifiedBatches.get(k); ok {
		return signer, e.payload, true, nil
	}
	key, err := crypto.UnmarshalPublicKey(e.pub)
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	// The key's protobuf in its one form too: an ed25519 key as libp2p
	// marshals it (its parser takes other field orders and extra fields,
	// which would give one record other envelope bytes).
	if again, err := crypto.MarshalPublicKey(key); err != nil || !bytes.Equal(again, e.pub) || key.Type() != crypto.Ed25519 {
		return "", nil, false, fmt.Errorf("%w: batch envelope: the key is not an ed25519 key in canonical form", ErrBadEnvelope)
	}
	if ok, err := key.Verify(msg, e.sig); err != nil || !ok {
		return "", nil, false, fmt.Errorf("%w: the batch signature does not verify", ErrBadSignature)
	}
	signer, err := peer.IDFromPublicKey(key)
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	verifiedBatches.add(k, signer)
	return signer, e.payload, false, nil
}

// verifiedBatches remembers batch signatures that verified, with the peer
// ID of their key, so that the other records of a batch cost their
// proof's hashes, not a key's parsing and a signature check each. It is a
// memo of a pure function (does this key sign this message with these
// exact signature bytes), keyed by a hash of all three, so what it answers
// is what ed25519 would. A signature enters a probation ring of
// memoProbation entries when it first verifies and the main ring of
// verifiedBatchMemo entries when a second record of its batch finds it:
// batches of one, or a flood of them under throwaway keys, never push
// out the batches being read.
var verifiedBatches = newBatchMemo(verifiedBatchMemo, memoProbation)

const (
	verifiedBatchMemo = 4096
	memoProbation     = 512
)

type batchMemo struct {
	mu        sync.Mutex
	main, new memoRing
}

// memoRing holds the newest entries up to its capacity.
type memoRing struct {
	seen map[[32]byte]peer.ID
	ring [][32]byte
	next int
}

func newMemoRing(n int) memoRing {
	return memoRing{seen: make(map[[32]byte]peer.ID, n), ring: make([][32]byte, 0, n)}
}

func (r *memoRing) add(k [32]byte, id peer.ID) {
	if _, ok := r.seen[k]; ok {
		return
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, k)
	} else {
		delete(r.seen, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % len(r.ring)
	}
	r.seen[k] = id
}

func newBatchMemo(main, probation int) *batchMemo {
	return &batchMemo{main: newMemoRing(main), new: newMemoRing(probation)}
}

// memoKey is the memo's key for a key, a message and a signature.
func memoKey(pub, msg, sig []byte) [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{pub, msg, sig} {
		var l [binary.MaxVarintLen64]byte
		h.Write(l[:binary.PutUvarint(l[:], uint64(len(b)))])
		h.Write(b)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (m *batchMemo) get(k [32]byte) (peer.ID, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.main.seen[k]; ok {
		return id, true
	}
	id, ok := m.new.seen[k]
	if ok { // a second record of the batch: it is being read
		m.main.add(k, id)
	}
	return id, ok
}

func (m *batchMemo) add(k [32]byte, signer peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.main.seen[k]; !ok {
		m.new.add(k, signer)
	}
}

// Bundles: several envelopes in one gossip message, so that a batch costs
// one message, not one per record. A bundle is protobuf field 16 (bytes)
// repeated, one envelope each: its first byte is never an envelope's
// (field 1), so a message is one or the other by its first byte.
const (
	// MaxBundle is the most envelopes one bundle holds.
	MaxBundle = 256
	// MaxBundleBytes bounds a bundle's bytes, framing included.
	MaxBundleBytes = MaxEnvelopeSize
	bundleField    = 16
)

// IsBundle reports whether a gossip message is a bundle.
func IsBundle(msg []byte) bool {
	num, typ, n := protowire.ConsumeTag(msg)
	return n > 0 && num == bundleField && typ == protowire.BytesType
}

// BundleSize is the bytes an envelope adds to a bundle.
func BundleSize(env []byte) int {
	return protowire.SizeTag(bundleField) + protowire.SizeBytes(len(env))
}

// EncodeBundle puts envelopes in a bundle. The caller keeps to MaxBundle
// and MaxBundleBytes (BundleSize), which DecodeBundle holds a sender to.
func EncodeBundle(envs [][]byte) []byte {
	n := 0
	for _, e := range envs {
		n += BundleSize(e)
	}
	b := make([]byte, 0, n)
	for _, e := range envs {
		b = protowire.AppendTag(b, bundleField, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// DecodeBundle returns the envelopes of a bundle, pointing into msg. It
// refuses a bundle of more than MaxBundle envelopes or MaxBundleBytes, an
// empty one, and anything but field 16.
func DecodeBundle(msg []byte) ([][]byte, error) {
	if len(msg) > MaxBundleBytes {
		return nil, fmt.Errorf("%w: a bundle of %d bytes (the limit is %d)", ErrTooLarge, len(msg), MaxBundleBytes)
	}
	var envs [][]byte
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 || num != bundleField || typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: bundle: not a list of envelopes", ErrBadEnvelope)
		}
		v, m := protowire.ConsumeBytes(msg[n:])
		if m < 0 {
			return nil, fmt.Errorf("%w: bundle: %v", ErrBadEnvelope, protowire.ParseError(m))
		}
		if len(envs) == MaxBundle {
			return nil, fmt.Errorf("%w: a bundle of more than %d envelopes", ErrTooLarge, MaxBundle)
		}
		envs, msg = append(envs, v), msg[n+m:]
	}
	if len(envs) == 0 {
		return nil, fmt.Errorf("%w: an empty bundle", ErrBadEnvelope)
	}
	return envs, nil
}
