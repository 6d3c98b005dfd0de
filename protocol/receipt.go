package protocol

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// HeldHead is one entry of a heads-receipt: the receipt's author holds
// Author's records 1..Seq of the channel, Seq being record CID.
type HeldHead struct {
	Seq uint64
	CID cid.Cid
}

// ParseHeadsReceipt reads a heads-receipt body: what its author holds, by
// author. A body that breaks the schema, names an author twice or holds a
// peer ID or CID that does not parse is refused.
func ParseHeadsReceipt(body map[string]any) (map[peer.ID]HeldHead, error) {
	if err := ValidateBody(KindHeadsReceipt, body); err != nil {
		return nil, err
	}
	out := map[peer.ID]HeldHead{}
	l, _ := body["heads"].([]any)
	for i, e := range l {
		m, _ := e.(map[string]any)
		as, _ := m["author"].(string)
		cs, _ := m["cid"].(string)
		seq, _ := m["seq"].(int64)
		a, err := peer.Decode(as)
		if err != nil {
			return nil, fmt.Errorf("%w: heads-receipt entry %d: author %q: %v", ErrMalformed, i, as, err)
		}
		c, err := cid.Decode(cs)
		if err != nil {
			return nil, fmt.Errorf("%w: heads-receipt entry %d: cid %q: %v", ErrMalformed, i, cs, err)
		}
		if _, dup := out[a]; dup {
			return nil, fmt.Errorf("%w: heads-receipt names %s twice", ErrMalformed, a)
		}
		out[a] = HeldHead{Seq: uint64(seq), CID: c}
	}
	return out, nil
}
