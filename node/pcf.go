package node

import (
	"fmt"
	"math/big"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// RelDescribes links a carbon-footprint record to the lot (production
// report) it is the footprint of.
const RelDescribes = "describes"

// rec20Units are the Rec 20 codes of the declared units footprints use.
var rec20Units = map[string]string{"H87": "piece", "KGM": "kilogram", "LTR": "liter", "MTR": "meter", "MTK": "square meter", "MTQ": "cubic meter", "TNE": "ton", "GRM": "gram"}

// PCF adds up the footprint of the lot production report c reports: its
// own carbon-footprint record (what its producer's process adds, per
// unit, times the quantity made) plus, for each material it consumed, the
// consumed quantity times that lot's footprint per unit. Footprints are
// found held or disclosed (the OEM knows its supplier's supplier's
// footprint only as the tier 1 disclosed it); each share names its signer.
// (docs/design.md, "Carbon footprint".)
func (n *Node) PCF(c cid.Cid) (*api.PCF, error) {
	pr, err := n.recordOrDisclosed(c)
	if err != nil {
		return nil, err
	}
	if pr.Record.Kind != protocol.KindProductionReport {
		return nil, badf("record %s is a %s: a footprint adds up for a production report (a lot)", c, pr.Record.Kind)
	}
	footprints, err := n.footprints()
	if err != nil {
		return nil, err
	}
	b := pr.Record.Body
	lot, _ := b["lotId"].(string)
	good, _ := b["quantityGood"].(map[string]any)
	qty, _ := good["value"].(string)
	unit, _ := good["unit"].(string)
	out := &api.PCF{CID: c.String(), Lot: lot, Part: partOf(b["item"]), Quantity: qty, Unit: unit, Inputs: []api.PCFShare{}, Complete: true}
	total := new(big.Rat)
	share := func(fp footprint, amount, amountUnit string) (api.PCFShare, error) {
		s := api.PCFShare{Footprint: fp.s.CID.String(), Signer: n.nameOf(fp.s.Record.Author), Disclosed: fp.disclosed, Unit: fp.unit, PerUnit: fp.perUnit}
		if fp.perUnit == "" {
			return s, fmt.Errorf("the footprint %s has no usable declaredUnitAmount", fp.s.CID)
		}
		if want := rec20Units[amountUnit]; want == "" || want != fp.unit {
			return s, fmt.Errorf("the footprint %s is per %q, the quantity in %s: the footprint must be declared per the unit the quantity is counted in", fp.s.CID, fp.unit, amountUnit)
		}
		if _, ok := new(big.Rat).SetString(amount); !ok {
			return s, fmt.Errorf("the quantity %q is not a number", amount)
		}
		sh := new(big.Rat).Mul(rat(amount), rat(fp.perUnit))
		s.Quantity, s.Share = amount, decString(sh)
		total.Add(total, sh)
		return s, nil
	}
	if fp, ok := footprints[c]; ok {
		s, err := share(fp, qty, unit)
		if err != nil {
			out.Complete, out.Problems = false, append(out.Problems, "own footprint: "+err.Error())
		} else {
			s.Lot = lot
			out.Own = &s
		}
	} else {
		out.Complete, out.Problems = false, append(out.Problems, fmt.Sprintf("no carbon-footprint record describes lot %s (%s)", lot, c))
	}
	// The lots consumed: those the report links consumes (a shipment
	// stands for the lots it ships), by lot number.
	byLot := map[string]footprint{}
	for _, l := range pr.Record.Links {
		if l.Rel != "consumes" {
			continue
		}
		lots := []cid.Cid{l.CID}
		if t, err := n.recordOrDisclosed(l.CID); err == nil && t.Record.Kind == protocol.KindDespatchAdvice {
			for _, sl := range t.Record.Links {
				if sl.Rel == "ships" {
					lots = append(lots, sl.CID)
				}
			}
		}
		for _, lc := range lots {
			if fp, ok := footprints[lc]; ok {
				if ln, _ := fp.lot.Record.Body["lotId"].(string); ln != "" {
					byLot[ln] = fp
				}
			}
		}
	}
	consumed, _ := b["consumed"].([]any)
	for _, e := range consumed {
		m, _ := e.(map[string]any)
		l, _ := m["lotId"].(string)
		q, _ := m["quantity"].(map[string]any)
		amount, _ := q["value"].(string)
		u, _ := q["unit"].(string)
		fp, ok := byLot[l]
		if l == "" || !ok {
			out.Complete = false
			out.Problems = append(out.Problems, fmt.Sprintf("no footprint held or disclosed for the consumed lot %q (%s %s of %s) among the lots the report links consumes: ask its producer to publish one, and its buyer to disclose it", l, amount, u, partOf(m["item"])))
			continue
		}
		s, err := share(fp, amount, u)
		s.Lot = l
		if err != nil {
			out.Complete, out.Problems = false, append(out.Problems, fmt.Sprintf("lot %s: %v", l, err))
			continue
		}
		out.Inputs = append(out.Inputs, s)
	}
	out.Total = decString(total)
	if q := rat(qty); q.Sign() > 0 {
		out.PerUnit = decString(new(big.Rat).Quo(total, q))
	}
	return out, nil
}

// footprint is a carbon-footprint record with the lot it describes.
type footprint struct {
	s         *protocol.Signed
	lot       *protocol.Signed // the production report it describes
	unit      string           // declared unit
	perUnit   string           // kgCO2e per declared unit
	disclosed bool
}

// footprints finds the carbon-footprint records the node holds or holds a
// disclosure of, by the CID of the lot each describes.
func (n *Node) footprints() (map[cid.Cid]footprint, error) {
	var cands []footprint
	for _, kind := range []string{protocol.KindCarbonFootprint, protocol.KindDisclosure} {
		err := n.store.ScanKind(kind, func(s *protocol.Signed) error {
			if kind == protocol.KindDisclosure {
				if o, err := protocol.Disclosed(s.Record.Body); err == nil && o.Record.Kind == protocol.KindCarbonFootprint {
					cands = append(cands, footprint{s: o, disclosed: true})
				}
				return nil
			}
			cands = append(cands, footprint{s: s})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := map[cid.Cid]footprint{}
	for _, fp := range cands {
		b := fp.s.Record.Body
		fp.unit, _ = b["declaredUnit"].(string)
		amount, _ := b["declaredUnitAmount"].(string)
		pcf, _ := b["pcfExcludingBiogenicUptake"].(string)
		a, okA := new(big.Rat).SetString(amount)
		p, okP := new(big.Rat).SetString(pcf)
		if okA && okP && a.Sign() > 0 {
			fp.perUnit = decString(new(big.Rat).Quo(p, a))
		}
		for _, l := range fp.s.Record.Links {
			if l.Rel != RelDescribes {
				continue
			}
			lot, err := n.recordOrDisclosed(l.CID)
			if err != nil || lot.Record.Kind != protocol.KindProductionReport || lot.Record.Author != fp.s.Record.Author {
				continue // only a lot's producer gives its footprint
			}
			fp.lot = lot
			if cur, ok := out[l.CID]; !ok || fp.s.Record.Time > cur.s.Record.Time {
				out[l.CID] = fp // the latest footprint of a lot
			}
		}
	}
	return out, nil
}

// recordOrDisclosed returns record c as held, or as a disclosure's
// original.
func (n *Node) recordOrDisclosed(c cid.Cid) (*protocol.Signed, error) {
	if s, err := n.store.Get(c); err == nil {
		return s, nil
	}
	if s := n.disclosedCopy(c); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: record %s is neither held here nor disclosed to this node", store.ErrNotFound, c)
}

// nameOf names a peer by the profile it shared, else its ID.
func (n *Node) nameOf(p peer.ID) string {
	if name := n.gov.name(p); name != "" {
		return name
	}
	return p.String()
}
