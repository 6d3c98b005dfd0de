package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// RelDiscloses links a disclosure to the record it carries.
const RelDiscloses = "discloses"

// Disclose passes record c, which the node holds (another company's
// inspection certificate, a carbon footprint), unchanged to channel dst,
// in a disclosure record: every member of dst can check the original's
// signature and CID, though it is not in the original's channel and never
// meets its author. A record whose author's terms forbid disclosure, or a
// channel's governance, is refused with the reason. (docs/design.md,
// "Disclosure".)
func (n *Node) Disclose(ctx context.Context, c cid.Cid, dst cid.Cid, note string) (*protocol.Signed, error) {
	orig, err := n.store.Get(c)
	if err != nil {
		return nil, fmt.Errorf("disclose %s: %w", c, err)
	}
	if orig.ChannelOf() == dst {
		return nil, badf("record %s is in that channel already: a disclosure passes a record to another channel", c)
	}
	body := map[string]any{"cid": c.String(), "original": base64.RawURLEncoding.EncodeToString(orig.Envelope)}
	if note != "" {
		body["note"] = note
	}
	if _, err := protocol.Disclosed(body); err != nil {
		if errors.Is(err, protocol.ErrDisclosureForbidden) {
			return nil, badf("%v", err)
		}
		return nil, badf("record %s cannot be disclosed: %v", c, err)
	}
	return n.Publish(ctx, dst, protocol.KindDisclosure, body, []protocol.Link{{Rel: RelDiscloses, CID: c}})
}
