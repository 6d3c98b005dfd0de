package store

// Key layout.
//
// Every key starts with a one-byte prefix naming its index. Integers are
// fixed-width big-endian, so byte order is numeric order. A variable-length
// part that is followed by more key bytes (channel CID, author peer ID,
// kind, rel, link target) is written as one length byte and its bytes, so
// that no such part can be mistaken for the prefix of a longer one; the last
// part of a key is written without a length. Values that are "-" are empty.
//
//	'v'                                             → layout version (1 byte)
//	'r' cid                                         → signed envelope
//	's' ch author seq(8)                            → [len] cid, prev cid (empty when seq = 1)
//	'c' ch newest(8) cid                            → -
//	'k' kind newest(8) cid                          → -
//	'b' target rel source                           → -
//	'h' ch author                                   → highest contiguous seq (8)
//	'f' ch author seq(8) cid                        → -
//
// where ch, author, kind, target and rel carry their length byte, and
// newest(8) is the record's time (unix ms) with the sign bit flipped and all
// bits inverted, so that a forward scan lists the newest record first (ties
// in ascending CID order).
//
// 'r' holds every record stored, including those kept only as fork
// evidence. 's' holds the first record seen for each (channel, author, seq);
// 'c', 'k' and 'b' index only records that hold their 's' slot. 'h' has an
// entry for every author with at least one record in the channel, even when
// its head is still 0 (seq 1 not yet seen); it is also where the list of
// channels and of a channel's authors comes from. 'f' lists, per (channel,
// author, seq), the records that prove the author equivocated there: the
// records holding that seq, and a record at seq+1 whose prev names another
// record than the one held at seq.
//
// The record of a channel genesis is indexed under the channel it founds,
// which is its own CID.

import (
	"encoding/binary"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Key prefixes.
const (
	pVersion  = 'v'
	pRecord   = 'r'
	pSeq      = 's'
	pChannel  = 'c'
	pKind     = 'k'
	pBacklink = 'b'
	pHead     = 'h'
	pFork     = 'f'
)

// The version of the key layout above, stored under 'v': layoutInline, 1,
// where every value under 'r' is the envelope; layoutLog, 2, where it may
// point into the record log that stores without encryption kept until
// December 2026 (legacy.go moves them to 1 when they are opened).
const (
	layoutInline = 1
	layoutLog    = 2
)

// maxPart is the longest variable-length key part that one length byte can
// describe.
const maxPart = 255

// keyBuf builds a key.
type keyBuf []byte

func newKey(prefix byte, capacity int) keyBuf {
	k := make(keyBuf, 1, 1+capacity)
	k[0] = prefix
	return k
}

// part appends b with its length byte. Callers check the length first
// (checkPart); a longer part is cut, never silently wrapped.
func (k keyBuf) part(b []byte) keyBuf {
	if len(b) > maxPart {
		b = b[:maxPart]
	}
	k = append(k, byte(len(b)))
	return append(k, b...)
}

func (k keyBuf) u64(v uint64) keyBuf {
	return binary.BigEndian.AppendUint64(k, v)
}

func (k keyBuf) raw(b []byte) keyBuf {
	return append(k, b...)
}

// checkPart reports an error when s is too long for a length-prefixed key
// part.
func checkPart(what string, s []byte) error {
	if len(s) > maxPart {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalid, what, len(s), maxPart)
	}
	return nil
}

// newest maps a unix-ms time to 8 bytes that sort newest first.
func newest(t int64) uint64 {
	return ^(uint64(t) ^ (1 << 63))
}

// fromNewest inverts newest.
func fromNewest(v uint64) int64 {
	return int64(^v ^ (1 << 63))
}

func recordKey(c cid.Cid) []byte {
	b := c.Bytes()
	return newKey(pRecord, len(b)).raw(b)
}

func seqPrefix(ch cid.Cid, author peer.ID) keyBuf {
	cb := ch.Bytes()
	return newKey(pSeq, 2+len(cb)+len(author)+8).part(cb).part([]byte(author))
}

func seqKey(ch cid.Cid, author peer.ID, seq uint64) []byte {
	return seqPrefix(ch, author).u64(seq)
}

func channelPrefix(ch cid.Cid) keyBuf {
	cb := ch.Bytes()
	return newKey(pChannel, 1+len(cb)+8+40).part(cb)
}

func channelKey(ch cid.Cid, t int64, c cid.Cid) []byte {
	return channelPrefix(ch).u64(newest(t)).raw(c.Bytes())
}

func kindPrefix(kind string) keyBuf {
	return newKey(pKind, 1+len(kind)+8+40).part([]byte(kind))
}

func kindKey(kind string, t int64, c cid.Cid) []byte {
	return kindPrefix(kind).u64(newest(t)).raw(c.Bytes())
}

func backlinkPrefix(target cid.Cid) keyBuf {
	tb := target.Bytes()
	return newKey(pBacklink, 1+len(tb)+1+16+40).part(tb)
}

func backlinkKey(target cid.Cid, rel string, from cid.Cid) []byte {
	return backlinkPrefix(target).part([]byte(rel)).raw(from.Bytes())
}

func headPrefix(ch cid.Cid) keyBuf {
	cb := ch.Bytes()
	return newKey(pHead, 2+len(cb)+40).part(cb)
}

func headKey(ch cid.Cid, author peer.ID) []byte {
	return headPrefix(ch).part([]byte(author))
}

func forkPrefix(ch cid.Cid) keyBuf {
	cb := ch.Bytes()
	return newKey(pFork, 2+len(cb)+40+8+40).part(cb)
}

func forkKey(ch cid.Cid, author peer.ID, seq uint64, c cid.Cid) []byte {
	return forkPrefix(ch).part([]byte(author)).u64(seq).raw(c.Bytes())
}

// prefixEnd returns the smallest key greater than every key starting with
// p, or nil when there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// keyReader takes a key apart. Every method fails softly: once a read runs
// past the end, err is set and later reads return zero values.
type keyReader struct {
	b   []byte
	err error
}

func (r *keyReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: malformed key %x", ErrCorrupt, r.b)
	}
}

func (r *keyReader) byte1() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *keyReader) part() []byte {
	n := int(r.byte1())
	if r.err != nil || len(r.b) < n {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *keyReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *keyReader) rest() []byte {
	v := r.b
	r.b = nil
	return v
}

func (r *keyReader) cid(b []byte) cid.Cid {
	if r.err != nil {
		return cid.Undef
	}
	c, err := castCID(b)
	if err != nil {
		r.err = err
	}
	return c
}

func (r *keyReader) peer(b []byte) peer.ID {
	if r.err != nil {
		return ""
	}
	id, err := peer.IDFromBytes(b)
	if err != nil {
		r.err = fmt.Errorf("%w: bad peer ID in key: %v", ErrCorrupt, err)
	}
	return id
}

// castCID decodes the binary form of a CID, which must be the whole of b.
func castCID(b []byte) (cid.Cid, error) {
	n, c, err := cid.CidFromBytes(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: bad CID %x: %v", ErrCorrupt, b, err)
	}
	if n != len(b) {
		return cid.Undef, fmt.Errorf("%w: %d stray bytes after CID", ErrCorrupt, len(b)-n)
	}
	return c, nil
}

// seqValue is the value of an 's' entry.
type seqValue struct {
	cid  cid.Cid
	prev cid.Cid
}

func encodeSeqValue(c, prev cid.Cid) []byte {
	cb := c.Bytes()
	v := make([]byte, 0, 1+len(cb)+prev.ByteLen())
	v = append(v, byte(len(cb)))
	v = append(v, cb...)
	if prev.Defined() {
		v = append(v, prev.Bytes()...)
	}
	return v
}

func decodeSeqValue(v []byte) (seqValue, error) {
	r := keyReader{b: v}
	cb := r.part()
	pb := r.rest()
	if r.err != nil {
		return seqValue{}, r.err
	}
	var sv seqValue
	var err error
	if sv.cid, err = castCID(cb); err != nil {
		return seqValue{}, err
	}
	if len(pb) > 0 {
		if sv.prev, err = castCID(pb); err != nil {
			return seqValue{}, err
		}
	}
	return sv, nil
}

func decodeU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %d-byte integer value", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
