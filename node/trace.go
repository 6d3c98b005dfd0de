package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// maxTraceNodes bounds what one trace walks.
const maxTraceNodes = 5000

// Trace follows a record's links across every channel the node holds:
// up, what it was made from and refers to (the records it links:
// consumes, fulfils, receives, inspects, supersedes …, and the
// inspections that link to it, as "inspected by"), or down, what was
// made from it (the records that link to it), to depth levels. A record
// reached twice is shown again without its branch; a linked record the
// node does not hold is shown as missing.
func (n *Node) Trace(c cid.Cid, down bool, depth int) (*api.TraceNode, error) {
	if depth <= 0 {
		depth = 10
	}
	seen := map[cid.Cid]bool{}
	disclosed := map[cid.Cid]*protocol.Signed{} // originals carried by disclosures on the way
	count := 0
	// Inspections known only as disclosures, by the CID they inspect: a
	// disclosed inspection vouches for a lot as a held one does.
	var inspections map[cid.Cid][]*protocol.Signed
	disclosedInspections := func(c cid.Cid) []*protocol.Signed {
		if inspections == nil {
			inspections = map[cid.Cid][]*protocol.Signed{}
			// A store error leaves what was read: the trace shows less.
			_ = n.store.ScanKind(protocol.KindDisclosure, func(d *protocol.Signed) error {
				o, err := protocol.Disclosed(d.Record.Body)
				if err != nil {
					return nil
				}
				for _, l := range o.Record.Links {
					if l.Rel == "inspects" {
						inspections[l.CID] = append(inspections[l.CID], o)
					}
				}
				return nil
			})
		}
		return inspections[c]
	}
	var walk func(c cid.Cid, rel string, level int) (api.TraceNode, error)
	walk = func(c cid.Cid, rel string, level int) (api.TraceNode, error) {
		node := api.TraceNode{CID: c.String(), Rel: rel}
		s, err := n.store.Get(c)
		if errors.Is(err, store.ErrNotFound) {
			if s = disclosed[c]; s == nil {
				s = n.disclosedCopy(c)
			}
			if s == nil {
				node.Missing = true
				return node, nil
			}
			node.Disclosed = true
		} else if err != nil {
			return node, err
		}
		r := s.Record
		if r.Kind == protocol.KindDisclosure {
			if o, err := protocol.Disclosed(r.Body); err == nil {
				disclosed[o.CID] = o
			}
		}
		node.Kind, node.Author, node.Channel = r.Kind, n.nameOf(r.Author), s.ChannelOf().String()
		node.DocID, _ = r.Body["docId"].(string)
		node.Lot, _ = r.Body["lotId"].(string)
		node.Time = time.UnixMilli(r.Time).UTC().Format(time.RFC3339)
		if seen[c] {
			node.Seen = true
			return node, nil
		}
		seen[c] = true
		if count++; count > maxTraceNodes {
			return node, fmt.Errorf("the trace reaches more than %d records; give a smaller depth", maxTraceNodes)
		}
		if level >= depth {
			return node, nil
		}
		var next []protocol.Link // the edges to follow, with the rel that names each
		if down {
			bl, err := n.store.Backlinks(c)
			if err != nil {
				return node, err
			}
			for _, b := range bl {
				if b.Rel != protocol.RelAfter {
					next = append(next, protocol.Link{Rel: b.Rel, CID: b.From})
				}
			}
		} else {
			for _, l := range r.Links {
				if l.Rel != protocol.RelAfter {
					next = append(next, l)
				}
			}
			// What vouches for a record is part of where it came from:
			// the inspections of a lot link to it.
			bl, err := n.store.Backlinks(c)
			if err != nil {
				return node, err
			}
			for _, b := range bl {
				if b.Rel == "inspects" {
					next = append(next, protocol.Link{Rel: "inspected by", CID: b.From})
				}
			}
			for _, o := range disclosedInspections(c) {
				disclosed[o.CID] = o
				next = append(next, protocol.Link{Rel: "inspected by", CID: o.CID})
			}
		}
		for _, x := range next {
			child, err := walk(x.CID, x.Rel, level+1)
			if err != nil {
				return node, err
			}
			node.Next = append(node.Next, child)
		}
		return node, nil
	}
	root, err := walk(c, "", 0)
	if err != nil {
		return nil, err
	}
	if root.Missing {
		return nil, fmt.Errorf("%w: record %s", store.ErrNotFound, c)
	}
	return &root, nil
}

// disclosedCopy returns record c as the original of a disclosure the node
// holds, or nil.
func (n *Node) disclosedCopy(c cid.Cid) *protocol.Signed {
	bl, err := n.store.Backlinks(c)
	if err != nil {
		return nil
	}
	for _, b := range bl {
		if b.Rel != RelDiscloses {
			continue
		}
		d, err := n.store.Get(b.From)
		if err != nil || d.Record.Kind != protocol.KindDisclosure {
			continue
		}
		if o, err := protocol.Disclosed(d.Record.Body); err == nil && o.CID.Equals(c) {
			return o
		}
	}
	return nil
}
