package node

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// The order lifecycle (docs/design.md, "Order lifecycle"): an order's
// state, line by line, derived from the records of its channel each time
// it is asked for. Orders are keyed by channel, buyer and document number.

// lifecycleKinds are the kinds an order's lifecycle is read from.
var lifecycleKinds = []string{"order", "order-change", "order-response", "despatch-advice", "receipt", "quality-inspection"}

type orderKey struct {
	ch    cid.Cid
	buyer peer.ID // the order's author: another member's number does not take it over
	docID string
}

// docKey names a document other than an order (a despatch-advice) by
// channel and number.
type docKey struct {
	ch    cid.Cid
	docID string
}

// Orders returns the lifecycle of every order in the node's channels, or
// in channel ch when it is defined, newest first.
func (n *Node) Orders(ch cid.Cid, now time.Time) ([]api.Order, error) {
	byKind := map[string][]*protocol.Signed{}
	for _, k := range lifecycleKinds {
		err := n.store.ScanKind(k, func(s *protocol.Signed) error {
			if !ch.Defined() || s.ChannelOf() == ch {
				byKind[k] = append(byKind[k], s)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return lifecycles(byKind, now), nil
}

// lifecycles folds the records into orders.
func lifecycles(byKind map[string][]*protocol.Signed, now time.Time) []api.Order {
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	ref := func(m map[string]any, k string) map[string]any { r, _ := m[k].(map[string]any); return r }
	list := func(v any) []map[string]any {
		l, _ := v.([]any)
		var out []map[string]any
		for _, e := range l {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	// The latest version of each order: the highest docVersion its buyer
	// (its author) published.
	latest := map[orderKey]*protocol.Signed{}
	for _, s := range append(slices.Clone(byKind["order"]), byKind["order-change"]...) {
		k := orderKey{s.ChannelOf(), s.Record.Author, str(s.Record.Body, "docId")}
		if cur, ok := latest[k]; ok && docVersion(s) <= docVersion(cur) {
			continue
		}
		latest[k] = s
	}
	// The orders a record of another company refers to by number: those
	// in its channel by someone other than its author.
	ordersNamed := func(s *protocol.Signed, docID string) []orderKey {
		var out []orderKey
		for k := range latest {
			if k.ch == s.ChannelOf() && k.docID == docID && k.buyer != s.Record.Author {
				out = append(out, k)
			}
		}
		return out
	}
	orders := map[orderKey]*api.Order{}
	lines := map[orderKey]map[string]*lineState{}
	for k, s := range latest {
		b := s.Record.Body
		o := &api.Order{DocID: k.docID, Version: docVersion(s), Channel: k.ch.String(), CID: s.CID.String(),
			Buyer: partyName(b["buyer"]), Seller: partyName(b["seller"]), IssuedAt: str(b, "issuedAt"), Status: "open"}
		if str(b, "status") == "cancelled" {
			o.Status = "cancelled"
		}
		ls := map[string]*lineState{}
		for _, l := range list(b["lines"]) {
			q := ref(l, "quantity")
			st := &lineState{OrderLine: api.OrderLine{LineID: str(l, "lineId"), Part: partOf(l["item"]), Unit: str(q, "unit"), Ordered: str(q, "value")}}
			if rd := ref(l, "requestedDelivery"); rd != nil {
				st.Requested = str(rd, "date")
				if st.Requested == "" {
					st.Requested = str(rd, "end")
				}
			}
			if str(l, "lineAction") == "cancel" {
				st.Status = "cancelled"
			}
			ls[st.LineID] = st
			o.Lines = append(o.Lines, st.OrderLine)
		}
		orders[k], lines[k] = o, ls
	}
	// The seller's latest response (a response by the order's own buyer
	// does not count).
	responded := map[orderKey]*protocol.Signed{}
	for _, s := range byKind["order-response"] {
		for _, k := range ordersNamed(s, str(ref(s.Record.Body, "orderRef"), "docId")) {
			if cur, ok := responded[k]; ok && s.Record.Time <= cur.Record.Time {
				continue
			}
			responded[k] = s
		}
	}
	for k, s := range responded {
		o := orders[k]
		o.Response = str(s.Record.Body, "responseCode")
		for _, l := range list(s.Record.Body["lines"]) {
			st := lines[k][str(l, "lineId")]
			if st == nil {
				continue
			}
			if st.Status != "cancelled" {
				st.Status = str(l, "lineStatus")
			}
			if q := ref(l, "confirmedQuantity"); q != nil {
				st.Confirmed = str(q, "value")
			}
			st.Promised = str(l, "confirmedDeliveryDate")
		}
		if o.Response == "rejected" && o.Status == "open" {
			o.Status = "rejected"
		}
	}
	// Shipments, by order line; which despatch line shipped which.
	type shipped struct {
		key  orderKey
		line string
	}
	despatchLines := map[docKey]map[string]shipped{} // despatch (ch, docId) → its lineId → order line
	despatchParts := map[docKey]map[string]shipped{} // … → part → order line
	lotsOf := map[string][]shipped{}                 // shipper and lot → order lines
	for _, s := range byKind["despatch-advice"] {
		b := s.Record.Body
		dk := docKey{s.ChannelOf(), str(b, "docId")}
		if despatchLines[dk] == nil {
			despatchLines[dk], despatchParts[dk] = map[string]shipped{}, map[string]shipped{}
		}
		for _, l := range list(b["lines"]) {
			or := ref(l, "orderRef")
			for _, ok := range ordersNamed(s, str(or, "docId")) {
				st := lines[ok][str(or, "lineId")]
				if st == nil {
					continue
				}
				if u := str(ref(l, "quantity"), "unit"); u != "" && st.Unit != "" && u != st.Unit {
					continue // another unit: not added to this line
				}
				q := str(ref(l, "quantity"), "value")
				sh := api.Shipment{DocID: dk.docID, CID: s.CID.String(), DespatchedAt: str(b, "despatchedAt"), Quantity: q}
				for _, lot := range asStrings(l["lotIds"]) {
					sh.Lots = append(sh.Lots, lot)
					lotsOf[s.Record.Author.String()+"\x00"+lot] = append(lotsOf[s.Record.Author.String()+"\x00"+lot], shipped{ok, st.LineID})
				}
				st.Shipments = append(st.Shipments, sh)
				st.shipped = add(st.shipped, q)
				despatchLines[dk][str(l, "lineId")] = shipped{ok, st.LineID}
				if _, dup := despatchParts[dk][partOf(l["item"])]; !dup {
					despatchParts[dk][partOf(l["item"])] = shipped{ok, st.LineID}
				}
			}
		}
	}
	// Receipts: each line of a receipt to the despatch line it received,
	// by line number, or else by part.
	for _, s := range byKind["receipt"] {
		b := s.Record.Body
		dk := docKey{s.ChannelOf(), str(ref(b, "despatchRef"), "docId")}
		for _, l := range list(b["lines"]) {
			to, ok := despatchLines[dk][str(l, "lineId")]
			if !ok {
				if to, ok = despatchParts[dk][partOf(l["item"])]; !ok {
					continue
				}
			}
			st := lines[to.key][to.line]
			got := str(ref(l, "quantityReceived"), "value")
			acc, rej := str(ref(l, "quantityAccepted"), "value"), str(ref(l, "quantityRejected"), "value")
			if acc == "" {
				acc = sub(got, rej)
			}
			st.received, st.accepted, st.rejected = add(st.received, got), add(st.accepted, acc), add(st.rejected, rej)
		}
	}
	// Inspections of the lots shipped, by the company that shipped them.
	for _, s := range byKind["quality-inspection"] {
		lot := str(s.Record.Body, "lotId")
		for _, to := range lotsOf[s.Record.Author.String()+"\x00"+lot] {
			st := lines[to.key][to.line]
			st.Inspections = append(st.Inspections, api.LotCheck{DocID: str(s.Record.Body, "docId"), CID: s.CID.String(), Lot: lot, Result: str(s.Record.Body, "result")})
		}
	}
	today := now.Format(time.DateOnly)
	var out []api.Order
	for k, o := range orders {
		allDone, anyLate := true, false
		for i := range o.Lines {
			st := lines[k][o.Lines[i].LineID]
			target := st.Ordered
			if st.Confirmed != "" {
				target = st.Confirmed
			}
			if st.Status == "rejected" || st.Status == "cancelled" {
				target = "0"
			}
			net := sub(st.shipped, st.rejected)
			st.Open = sub(target, net)
			if cmpDec(st.Open, "0") < 0 {
				st.Open = "0"
			}
			st.Shipped, st.Received, st.Accepted, st.Rejected = orZero(st.shipped), orZero(st.received), orZero(st.accepted), orZero(st.rejected)
			due := st.Promised
			if due == "" {
				due = st.Requested
			}
			st.Late = cmpDec(st.Open, "0") > 0 && due != "" && due < today
			allDone = allDone && cmpDec(st.Open, "0") == 0
			anyLate = anyLate || st.Late
			o.Lines[i] = st.OrderLine
		}
		switch {
		case o.Status != "open":
		case allDone:
			o.Status = "done"
		case anyLate:
			o.Status = "late"
		}
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b api.Order) int {
		if c := strings.Compare(b.IssuedAt, a.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.DocID, b.DocID)
	})
	return out
}

// lineState is a line being added up.
type lineState struct {
	api.OrderLine
	shipped, received, accepted, rejected string
}

func docVersion(s *protocol.Signed) int64 {
	v, _ := s.Record.Body["docVersion"].(int64)
	return v
}

func partyName(p any) string {
	m, _ := p.(map[string]any)
	if n, _ := m["name"].(string); n != "" {
		return n
	}
	id, _ := m["id"].(string)
	return id
}

func partOf(item any) string {
	m, _ := item.(map[string]any)
	for _, k := range []string{"buyerPartNo", "supplierPartNo", "gtin"} {
		if p, _ := m[k].(string); p != "" {
			return p
		}
	}
	return ""
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Decimal strings, added and compared exactly.
func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return new(big.Rat)
	}
	return r
}

func decString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	s := r.FloatString(9)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func add(a, b string) string { return decString(new(big.Rat).Add(rat(a), rat(b))) }
func sub(a, b string) string { return decString(new(big.Rat).Sub(rat(a), rat(b))) }
func cmpDec(a, b string) int { return rat(a).Cmp(rat(b)) }

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// Order returns the lifecycle of order docID, in channel ch when it is
// defined; an order number in two channels is ambiguous without one.
func (n *Node) Order(ch cid.Cid, docID string, now time.Time) (*api.Order, error) {
	all, err := n.Orders(ch, now)
	if err != nil {
		return nil, err
	}
	var found []api.Order
	for _, o := range all {
		if o.DocID == docID {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: no order %s in the node's channels", errNoOrder, docID)
	case 1:
		return &found[0], nil
	}
	return nil, fmt.Errorf("%w: order %s is in %d channels; name one with channel", errAmbiguous, docID, len(found))
}
