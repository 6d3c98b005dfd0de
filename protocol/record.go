package protocol

import (
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Version is the record format version this package writes and accepts.
const Version = 1

// Limits on what a record may hold. A record beyond them is refused before it
// is decoded.
const (
	// MaxRecordSize is the largest encoded record, in bytes.
	MaxRecordSize = 256 << 10
	// MaxEnvelopeSize is the largest signed envelope, in bytes: the record plus
	// the key, signature and framing.
	MaxEnvelopeSize = MaxRecordSize + 1024
	// MaxDepth is the deepest nesting of maps and lists in a body.
	MaxDepth = 32
)

// Governance kinds, which live in the same chains as business records.
const (
	KindChannelGenesis = "channel-genesis"
	KindChannelMembers = "channel-members"
	KindProfile        = "profile"
)

// Link is a typed reference from one record to another.
type Link struct {
	Rel string
	CID cid.Cid
}

// Record is one business fact. Its canonical DAG-CBOR encoding is what is
// hashed and signed.
//
// Body values are of these types only: nil, bool, int64, float64, string,
// []byte, cid.Cid, []any and map[string]any.
type Record struct {
	// Channel is the channel the record was published in; cid.Undef only in a
	// channel genesis.
	Channel cid.Cid
	// Author is the peer ID of the company that signed the record.
	Author peer.ID
	// Seq is the record's position in the author's log in this channel, from 1.
	Seq uint64
	// Prev is the author's previous record in this channel; cid.Undef when Seq is 1.
	Prev cid.Cid
	// Time is the author's clock in unix milliseconds; advisory only.
	Time int64
	// Kind names the body's schema ("order", "despatch-advice", ...).
	Kind string
	// Links are references to other records.
	Links []Link
	// Body holds the kind's fields.
	Body map[string]any
}

// Signed is a record with its encoding, content address and signed envelope.
// Values returned by Seal and Open are consistent: CID is the hash of Bytes,
// Bytes is the canonical encoding of Record, and Envelope carries Bytes
// signed by Record.Author.
type Signed struct {
	Record   *Record
	Bytes    []byte
	CID      cid.Cid
	Envelope []byte
	// Signer is the key that signed Envelope: the author's own but for a
	// company that changed keys (KeyLog). Set by Seal, SealWith and the
	// Open functions; Load leaves it empty (see SignerOf).
	Signer peer.ID
	// Memoized is set by the Open functions when the envelope's batch
	// signature was one verified before, for another record of its batch,
	// so that no signature check was made for this one.
	Memoized bool
}
