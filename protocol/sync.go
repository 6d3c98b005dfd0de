package protocol

import (
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// MaxHeads is the most authors a heads vector may name.
const MaxHeads = 1 << 16

// Heads is a channel's heads vector: for each author, the highest seq held
// with no gap below it.
type Heads map[peer.ID]uint64

// HeadsMessage is what sync peers exchange about a channel: the sender's
// heads vector, and the CID of each head record. The asker sends its own so
// the answerer can send what it lacks, and its own record at the asker's
// head when that is another record (proof that the author equivocated); the
// answerer sends its own so the asker can tell how far behind it is.
type HeadsMessage struct {
	Channel cid.Cid
	Heads   Heads
	// Tips holds the CID of the record at each author's head (seq > 0).
	Tips map[peer.ID]cid.Cid
}

// Encode returns the canonical DAG-CBOR encoding of m:
// {"c": channel link, "h": [[author bytes, seq, head CID], ...]} with
// authors in byte order; the CID is left out when seq is 0 or unknown.
func (m *HeadsMessage) Encode() ([]byte, error) {
	if !m.Channel.Defined() {
		return nil, fmt.Errorf("%w: heads message without a channel", ErrMalformed)
	}
	if len(m.Heads) > MaxHeads {
		return nil, fmt.Errorf("%w: %d authors in a heads vector, at most %d", ErrTooLarge, len(m.Heads), MaxHeads)
	}
	authors := make([]peer.ID, 0, len(m.Heads))
	for a := range m.Heads {
		authors = append(authors, a)
	}
	slices.Sort(authors)
	l := make([]any, len(authors))
	for i, a := range authors {
		e := []any{[]byte(a), int64(m.Heads[a])}
		if tip, ok := m.Tips[a]; ok && tip.Defined() && m.Heads[a] > 0 {
			e = append(e, tip)
		}
		l[i] = e
	}
	return EncodeValue(map[string]any{"c": m.Channel, "h": l})
}

// DecodeHeadsMessage decodes a heads message, strictly: canonical bytes, no
// other fields, valid peer IDs in byte order, seqs from 0.
func DecodeHeadsMessage(b []byte) (*HeadsMessage, error) {
	if len(b) > MaxHeads*64 {
		return nil, fmt.Errorf("heads message of %d bytes: %w", len(b), ErrTooLarge)
	}
	v, err := DecodeValue(b)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 2 {
		return nil, fmt.Errorf("%w: a heads message is a map of c and h", ErrMalformed)
	}
	out := &HeadsMessage{Heads: Heads{}, Tips: map[peer.ID]cid.Cid{}}
	if out.Channel, ok = m["c"].(cid.Cid); !ok {
		return nil, fmt.Errorf("%w: heads message: c must be a link", ErrMalformed)
	}
	l, ok := m["h"].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: heads message: h must be a list", ErrMalformed)
	}
	if len(l) > MaxHeads {
		return nil, fmt.Errorf("%w: %d authors in a heads vector, at most %d", ErrTooLarge, len(l), MaxHeads)
	}
	var last peer.ID
	for i, e := range l {
		pair, ok := e.([]any)
		if !ok || len(pair) < 2 || len(pair) > 3 {
			return nil, fmt.Errorf("%w: heads message: h/%d must be [author, seq] or [author, seq, cid]", ErrMalformed, i)
		}
		raw, ok := pair[0].([]byte)
		if !ok {
			return nil, fmt.Errorf("%w: heads message: h/%d/0 must be bytes", ErrMalformed, i)
		}
		a, err := peer.IDFromBytes(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: heads message: h/%d/0: %v", ErrMalformed, i, err)
		}
		if i > 0 && a <= last {
			return nil, fmt.Errorf("%w: heads message: authors out of order or repeated at h/%d", ErrMalformed, i)
		}
		last = a
		seq, ok := pair[1].(int64)
		if !ok || seq < 0 {
			return nil, fmt.Errorf("%w: heads message: h/%d/1 must be an integer from 0", ErrMalformed, i)
		}
		out.Heads[a] = uint64(seq)
		if len(pair) == 3 {
			tip, ok := pair[2].(cid.Cid)
			if !ok || seq == 0 {
				return nil, fmt.Errorf("%w: heads message: h/%d/2 must be the link of a head from seq 1", ErrMalformed, i)
			}
			out.Tips[a] = tip
		}
	}
	return out, nil
}
