package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestOrderLifecycle: with real nodes, a buyer's order goes through a
// changed confirmation, a partial shipment, a receipt that rejects some
// parts, an inspection of the lot and an order change; the lifecycle the
// buyer's node derives, and the seller's, add up line by line. A second
// order, rejected by the seller, says so.
func TestOrderLifecycle(t *testing.T) {
	a, b := startNode(t, "OEM"), startNode(t, "T1")
	ch := link(t, a, b, "orders")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	party := func(id string) map[string]any { return map[string]any{"scheme": "vendor", "id": id, "name": id} }
	qty := func(v string) map[string]any { return map[string]any{"value": v, "unit": "H87"} }
	line := func(id, part, q, date string) map[string]any {
		return map[string]any{"lineId": id, "item": map[string]any{"buyerPartNo": part}, "quantity": qty(q), "requestedDelivery": map[string]any{"date": date}}
	}
	pub := func(n *Node, kind string, body map[string]any) {
		t.Helper()
		if _, err := n.Publish(ctx, ch, kind, body, nil); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
	}
	pub(a, "order", map[string]any{"docId": "PO-1", "docVersion": int64(1), "issuedAt": "2026-11-20T09:00:00+09:00", "buyer": party("OEM"), "seller": party("T1"),
		"lines": []any{line("1", "P-100", "100", "2026-11-27"), line("2", "P-200", "50", "2026-11-28")}})
	pub(b, "order-response", map[string]any{"docId": "OR-1", "docVersion": int64(1), "issuedAt": "2026-11-20T15:00:00+09:00", "orderRef": map[string]any{"docId": "PO-1"},
		"seller": party("T1"), "buyer": party("OEM"), "responseCode": "changed", "lines": []any{
			map[string]any{"lineId": "1", "lineStatus": "accepted"},
			map[string]any{"lineId": "2", "lineStatus": "changed", "confirmedQuantity": qty("40"), "confirmedDeliveryDate": "2026-12-05"}}})
	pub(b, "despatch-advice", map[string]any{"docId": "DN-1", "docVersion": int64(1), "issuedAt": "2026-11-26T10:00:00+09:00", "despatchedAt": "2026-11-26T10:00:00+09:00",
		"seller": party("T1"), "buyer": party("OEM"), "lines": []any{
			map[string]any{"lineId": "1", "orderRef": map[string]any{"docId": "PO-1", "lineId": "1"}, "item": map[string]any{"buyerPartNo": "P-100"}, "quantity": qty("60"), "lotIds": []any{"L1"}},
			map[string]any{"lineId": "2", "orderRef": map[string]any{"docId": "PO-1", "lineId": "2"}, "item": map[string]any{"buyerPartNo": "P-200"}, "quantity": qty("40")}}})
	pub(b, "quality-inspection", map[string]any{"docId": "QI-1", "docVersion": int64(1), "inspectedAt": "2026-11-26T09:00:00+09:00", "inspector": party("T1"),
		"inspectionType": "outgoing", "item": map[string]any{"buyerPartNo": "P-100"}, "lotId": "L1", "sampleSize": int64(5), "result": "pass"})
	pub(a, "receipt", map[string]any{"docId": "GR-1", "docVersion": int64(1), "issuedAt": "2026-11-27T08:00:00+09:00", "receivedAt": "2026-11-27T08:00:00+09:00",
		"buyer": party("OEM"), "seller": party("T1"), "despatchRef": map[string]any{"docId": "DN-1"}, "lines": []any{
			map[string]any{"lineId": "1", "item": map[string]any{"buyerPartNo": "P-100"}, "quantityReceived": qty("60"), "quantityAccepted": qty("55"), "quantityRejected": qty("5"), "rejectReason": "burr"},
			map[string]any{"lineId": "2", "item": map[string]any{"buyerPartNo": "P-200"}, "quantityReceived": qty("40")}}})
	// The buyer raises line 1 to 120: version 2 wins.
	change := map[string]any{"docId": "PO-1", "docVersion": int64(2), "changeSeq": int64(1), "issuedAt": "2026-11-28T09:00:00+09:00", "buyer": party("OEM"), "seller": party("T1"),
		"lines": []any{line("1", "P-100", "120", "2026-11-27"), line("2", "P-200", "50", "2026-11-28")}}
	change["lines"].([]any)[0].(map[string]any)["lineAction"] = "change"
	pub(a, "order-change", change)
	pub(a, "order", map[string]any{"docId": "PO-2", "docVersion": int64(1), "issuedAt": "2026-11-21T09:00:00+09:00", "buyer": party("OEM"), "seller": party("T1"),
		"lines": []any{line("1", "P-300", "10", "2026-11-30")}})
	pub(b, "order-response", map[string]any{"docId": "OR-2", "docVersion": int64(1), "issuedAt": "2026-11-21T15:00:00+09:00", "orderRef": map[string]any{"docId": "PO-2"},
		"seller": party("T1"), "buyer": party("OEM"), "responseCode": "rejected", "reason": "no capacity"})

	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, n := range []*Node{a, b} {
		var o *api.Order
		waitFor(t, n.cfg.Name+" to see the whole of PO-1", 30*time.Second, func() bool {
			var err error
			o, err = n.Order(cid.Undef, "PO-1", now)
			return err == nil && o.Version == 2 && len(o.Lines) == 2 && o.Lines[0].Received != "0" && len(o.Lines[0].Inspections) == 1
		})
		l1, l2 := o.Lines[0], o.Lines[1]
		if o.Status != "late" || o.Response != "changed" {
			t.Errorf("%s: PO-1 %s, response %s; want late, changed", n.cfg.Name, o.Status, o.Response)
		}
		if l1.Ordered != "120" || l1.Shipped != "60" || l1.Accepted != "55" || l1.Rejected != "5" || l1.Open != "65" || !l1.Late || l1.Inspections[0].Result != "pass" {
			t.Errorf("%s: line 1 %+v", n.cfg.Name, l1)
		}
		if l2.Confirmed != "40" || l2.Shipped != "40" || l2.Accepted != "40" || l2.Open != "0" || l2.Late || l2.Promised != "2026-12-05" {
			t.Errorf("%s: line 2 %+v", n.cfg.Name, l2)
		}
		waitFor(t, "PO-2's rejection", 30*time.Second, func() bool {
			o2, err := n.Order(ch, "PO-2", now)
			return err == nil && o2.Status == "rejected"
		})
	}
	if _, err := a.Order(cid.Undef, "PO-9", now); err == nil {
		t.Error("an order nobody placed was found")
	}
	h := newAPIHarness(t, a)
	c := api.NewClient(h.srv.URL, h.token)
	late, err := c.Orders(ctx, "", "late")
	if err != nil || len(late) != 1 || late[0].DocID != "PO-1" {
		// PO-1 is late today as on the test's date: its line 1 was due 2026-11-27.
		t.Fatalf("late orders: %v %+v", err, late)
	}
}

// TestTraceAcrossChannels: the tier 1's shipment in its channel with the
// OEM traces up, through its production report, to the tier 2's lot and
// shipment in the other channel; the tier 2's lot traces down to the
// shipment; a link to a record the node does not hold shows as missing.
func TestTraceAcrossChannels(t *testing.T) {
	t1, t2 := startNode(t, "T1"), startNode(t, "T2")
	down := link(t, t1, t2, "t1-t2")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	up, err := t1.CreateChannel(ctx, "oem-t1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	note := func(n *Node, ch cid.Cid, text string, links ...protocol.Link) *protocol.Signed {
		t.Helper()
		s, err := n.Publish(ctx, ch, "note", map[string]any{"text": text}, links)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	matLot := note(t2, down, "friction material lot M-1")
	matShip := note(t2, down, "shipment of M-1", protocol.Link{Rel: "ships", CID: matLot.CID})
	waitFor(t, "T1 to hold T2's shipment", 30*time.Second, func() bool { return has(t1, matShip.CID) })
	padLot := note(t1, up, "brake pads lot P-1", protocol.Link{Rel: "consumes", CID: matShip.CID}, protocol.Link{Rel: "consumes", CID: matLot.CID})
	ghost := protocol.Sum([]byte("a record nobody here holds"))
	ship := note(t1, up, "shipment to the OEM", protocol.Link{Rel: "ships", CID: padLot.CID}, protocol.Link{Rel: "fulfils", CID: ghost})

	tr, err := t1.Trace(ship.CID, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]api.TraceNode{}
	var walk func(api.TraceNode)
	walk = func(n api.TraceNode) {
		if _, ok := found[n.CID]; !ok || !n.Seen {
			found[n.CID] = n
		}
		for _, c := range n.Next {
			walk(c)
		}
	}
	walk(*tr)
	if n, ok := found[matLot.CID.String()]; !ok || n.Channel != down.String() {
		t.Fatalf("the trace up from the shipment does not reach T2's lot in the other channel: %+v", found)
	}
	if n := found[ghost.String()]; !n.Missing {
		t.Fatalf("the record nobody holds: %+v", n)
	}
	if len(found) != 5 {
		t.Fatalf("the trace reached %d records, want 5 (shipment, pad lot, material shipment and lot, the missing one)", len(found))
	}
	dtr, err := t1.Trace(matLot.CID, true, 10)
	if err != nil {
		t.Fatal(err)
	}
	found = map[string]api.TraceNode{}
	walk(*dtr)
	if _, ok := found[ship.CID.String()]; !ok {
		t.Fatalf("the trace down from T2's lot does not reach the shipment to the OEM: %+v", found)
	}
	if short, err := t1.Trace(ship.CID, false, 1); err != nil || len(short.Next) != 2 || len(short.Next[0].Next) != 0 {
		t.Fatalf("depth 1: %+v %v", short, err)
	}
}

// TestLinksWithMeaning: a publish whose link breaks its kind's rules is
// refused with the rule, for a target the node holds; a partner's record
// that links a record the node does not hold yet is checked when that
// record arrives, and a mismatch is counted, not refused.
func TestLinksWithMeaning(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "x")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	party := map[string]any{"scheme": "vendor", "id": "A"}
	qty := map[string]any{"value": "1", "unit": "H87"}
	item := map[string]any{"buyerPartNo": "P"}
	order := map[string]any{"docId": "PO-1", "docVersion": int64(1), "issuedAt": "2026-11-20T09:00:00+09:00", "buyer": party, "seller": party,
		"lines": []any{map[string]any{"lineId": "1", "item": item, "quantity": qty, "requestedDelivery": map[string]any{"date": "2026-11-27"}}}}
	po, err := a.Publish(ctx, ch, "order", order, nil)
	if err != nil {
		t.Fatal(err)
	}
	receipt := map[string]any{"docId": "GR-1", "docVersion": int64(1), "issuedAt": "2026-11-26T09:00:00+09:00", "receivedAt": "2026-11-26T09:00:00+09:00",
		"buyer": party, "seller": party, "despatchRef": map[string]any{"docId": "DN-1"}, "lines": []any{map[string]any{"lineId": "1", "item": item, "quantityReceived": qty}}}
	_, err = a.Publish(ctx, ch, "receipt", receipt, []protocol.Link{{Rel: "receives", CID: po.CID}})
	if !errors.Is(err, protocol.ErrBadLink) || !strings.Contains(err.Error(), "receives of a receipt must point to despatch-advice") {
		t.Fatalf("a receipt that receives an order: %v", err)
	}
	if _, err := a.Publish(ctx, ch, "order", order, []protocol.Link{{Rel: "fulfils", CID: po.CID}}); !errors.Is(err, protocol.ErrBadLink) {
		t.Fatalf("an order with a rel orders do not take: %v", err)
	}
	// B signs an order and a receipt that wrongly receives it; A gets the
	// receipt first, when it cannot check the link, then the order: the
	// link is checked then, counted, and neither record refused.
	before := counterValue(t, a.metrics.linkMismatches)
	wrongOrder := sealLinked(t, b, ch, "order", map[string]any{"docId": "PO-2", "docVersion": int64(1), "issuedAt": "2026-11-20T09:00:00+09:00", "buyer": party, "seller": party,
		"lines": []any{map[string]any{"lineId": "1", "item": item, "quantity": qty, "requestedDelivery": map[string]any{"date": "2026-11-27"}}}}, 1, cid.Undef)
	body := map[string]any{"docId": "GR-2", "docVersion": int64(1), "issuedAt": "2026-11-26T09:00:00+09:00", "receivedAt": "2026-11-26T09:00:00+09:00",
		"buyer": party, "seller": party, "despatchRef": map[string]any{"docId": "DN-2"}, "lines": []any{map[string]any{"lineId": "1", "item": item, "quantityReceived": qty}}}
	r := sealLinked(t, b, ch, "receipt", body, 2, wrongOrder.CID, protocol.Link{Rel: "receives", CID: wrongOrder.CID})
	if _, err := a.ingest(ch, r.Envelope, b.ID(), opGossip); err != nil {
		t.Fatalf("the receipt: %v", err)
	}
	if got := counterValue(t, a.metrics.linkMismatches); got != before {
		t.Fatalf("mismatches %v before the linked record arrived, want %v", got, before)
	}
	if _, err := a.ingest(ch, wrongOrder.Envelope, b.ID(), opGossip); err != nil {
		t.Fatalf("the order: %v", err)
	}
	if got := counterValue(t, a.metrics.linkMismatches); got != before+1 {
		t.Fatalf("mismatches %v once the order arrived, want %v", got, before+1)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// sealLinked signs a record of n's, the given places after its head in
// ch, without the checks of Publish and without storing it.
func sealLinked(t *testing.T, n *Node, ch cid.Cid, kind string, body map[string]any, ahead uint64, prev cid.Cid, links ...protocol.Link) *protocol.Signed {
	t.Helper()
	seq, head, err := n.ownHead(ch)
	if err != nil {
		t.Fatal(err)
	}
	if ahead == 1 {
		prev = head
	}
	s, err := protocol.Seal(&protocol.Record{Channel: ch, Author: n.self, Seq: seq + ahead, Prev: prev, Time: 1, Kind: kind, Body: body, Links: links}, n.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
