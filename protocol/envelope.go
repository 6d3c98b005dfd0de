package protocol

import (
	"bytes"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"google.golang.org/protobuf/encoding/protowire"
)

// EnvelopeDomain is the signature domain of record envelopes (libp2p RFC 0002):
// a signature made for any other purpose can never pass as a record's.
const EnvelopeDomain = "sangsaeng-record"

// payloadType is the dag-cbor multicodec (0x71) as an unsigned varint.
var payloadType = []byte{0x71}

// payload carries record bytes through go-libp2p's envelope API.
type payload struct{ b []byte }

var _ record.Record = (*payload)(nil)

func (p *payload) Domain() string                 { return EnvelopeDomain }
func (p *payload) Codec() []byte                  { return payloadType }
func (p *payload) MarshalRecord() ([]byte, error) { return p.b, nil }
func (p *payload) UnmarshalRecord(b []byte) error { p.b = b; return nil }

// Seal encodes r, computes its CID and signs it with key, which must be the
// key of r.Author.
func Seal(r *Record, key crypto.PrivKey) (*Signed, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if id != r.Author {
		return nil, fmt.Errorf("seal: key of %s cannot sign for author %s: %w", id, r.Author, ErrAuthorMismatch)
	}
	return SealWith(r, key)
}

// SealWith is Seal with any key: a key the author's key log puts in force
// (KeyLog.Check), which only the reader of that log can tell.
func SealWith(r *Record, key crypto.PrivKey) (*Signed, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	b, err := r.Encode()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	env, err := record.Seal(&payload{b: b}, key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Signed{Record: r, Bytes: b, CID: Sum(b), Envelope: raw, Signer: id}, nil
}

// Open verifies a signed envelope and decodes the record inside. It fails
// unless the envelope is in canonical form, its domain and payload type are
// a record's, the signature verifies, the signing key is the record's author,
// and the record decodes canonically.
func Open(env []byte) (*Signed, error) { return open(env, nil, false) }

// OpenDelegated is Open for a record that a key other than its author's
// may have signed: Signer names the key, and whether it signs for the
// author is for the author's key log to say (KeyLog.Check). Everything
// else is checked as Open checks it.
func OpenDelegated(env []byte) (*Signed, error) { return open(env, nil, true) }

// OpenLoadedDelegated is OpenLoaded that lets any key sign, as
// OpenDelegated does.
func OpenLoadedDelegated(l *Signed) (*Signed, error) {
	if l == nil || l.Record == nil {
		return nil, fmt.Errorf("%w: nothing loaded", ErrBadEnvelope)
	}
	return open(l.Envelope, l, true)
}

// OpenLoaded is Open for an envelope already decoded by Load, as a node
// does to check an author's quota before it spends a signature check: it
// verifies l.Envelope as Open does, without decoding the record again.
func OpenLoaded(l *Signed) (*Signed, error) {
	if l == nil || l.Record == nil {
		return nil, fmt.Errorf("%w: nothing loaded", ErrBadEnvelope)
	}
	return open(l.Envelope, l, false)
}

func open(env []byte, loaded *Signed, delegated bool) (*Signed, error) {
	if len(env) > MaxEnvelopeSize {
		return nil, fmt.Errorf("envelope is %d bytes: %w (the limit is %d bytes)", len(env), ErrTooLarge, MaxEnvelopeSize)
	}
	signer, body, memoized, err := openSignature(env)
	if err != nil {
		return nil, err
	}
	var r *Record
	if loaded != nil && bytes.Equal(loaded.Bytes, body) {
		r = loaded.Record
	} else if r, err = Decode(body); err != nil {
		return nil, err
	}
	if signer != r.Author && !delegated {
		return nil, fmt.Errorf("signed by %s, author %s: %w", signer, r.Author, ErrAuthorMismatch)
	}
	return &Signed{Record: r, Bytes: body, CID: Sum(body), Envelope: env, Signer: signer, Memoized: memoized}, nil
}

// openSignature verifies an envelope of either form, single or batch, and
// returns the key that signed it, the payload it signed, and whether its
// batch signature was found in the memo (no check made).
func openSignature(env []byte) (peer.ID, []byte, bool, error) {
	if isBatchEnvelope(env) {
		return openBatch(env)
	}
	var p payload
	e, err := record.ConsumeTypedEnvelope(env, &p)
	if err != nil {
		if e != nil { // parsed, but the signature did not verify
			return "", nil, false, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return "", nil, false, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	if !bytes.Equal(e.PayloadType, payloadType) {
		return "", nil, false, fmt.Errorf("%w: payload type %x is not dag-cbor", ErrBadEnvelope, e.PayloadType)
	}
	// Protobuf tolerates unknown fields and other encodings of the same
	// message; only the canonical bytes are a record envelope.
	again, err := e.Marshal()
	if err != nil || !bytes.Equal(again, env) {
		return "", nil, false, fmt.Errorf("%w: not in canonical form", ErrBadEnvelope)
	}
	signer, err := peer.IDFromPublicKey(e.PublicKey)
	if err != nil {
		return "", nil, false, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	return signer, p.b, false, nil
}

// Envelope protobuf field numbers (go-libp2p core/record/pb/envelope.proto).
const (
	envelopeKeyField     = 1
	envelopePayloadField = 3
)

// SignerOf returns the key that signed an envelope, without verifying the
// signature: for an envelope from the node's own store, which was verified
// before it was stored.
func SignerOf(env []byte) (peer.ID, error) {
	b, err := envelopeField(env, envelopeKeyField)
	if err != nil {
		return "", err
	}
	k, err := crypto.UnmarshalPublicKey(b)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	return peer.IDFromPublicKey(k)
}

// Load decodes a record from an envelope that was opened, and so verified,
// before it was stored. It skips the signature check; use Open for anything
// that did not come from the node's own store.
func Load(env []byte) (*Signed, error) {
	b, err := envelopePayload(env)
	if err != nil {
		return nil, err
	}
	r, err := Decode(b)
	if err != nil {
		return nil, err
	}
	return &Signed{Record: r, Bytes: b, CID: Sum(b), Envelope: env}, nil
}

// envelopePayload returns the payload field of an envelope without copying.
func envelopePayload(env []byte) ([]byte, error) { return envelopeField(env, envelopePayloadField) }

// envelopeField returns a bytes field of an envelope without copying.
func envelopeField(env []byte, field protowire.Number) ([]byte, error) {
	var out []byte
	for len(env) > 0 {
		num, typ, n := protowire.ConsumeTag(env)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, protowire.ParseError(n))
		}
		env = env[n:]
		if num == field && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(env)
			if n < 0 {
				return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, protowire.ParseError(n))
			}
			out, env = v, env[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, env)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, protowire.ParseError(n))
		}
		env = env[n:]
	}
	if out == nil {
		return nil, fmt.Errorf("%w: no field %d", ErrBadEnvelope, field)
	}
	return out, nil
}

// EnvelopeCID returns the CID of the record inside an envelope without
// verifying or decoding it: the message ID of a record on gossipsub.
func EnvelopeCID(env []byte) (cid.Cid, error) {
	b, err := envelopePayload(env)
	if err != nil {
		return cid.Undef, err
	}
	return Sum(b), nil
}
