// Command supplychain plays one week of a three-tier auto-parts supply chain
// on three real sangsaeng nodes in one process, on loopback, each with its own
// identity and Badger store in a temporary directory:
//
//   - 한빛모터스 (the OEM) orders brake pad assemblies from 대성정밀 (tier 1);
//   - 대성정밀 confirms and orders friction material from 세진소재 (tier 2);
//   - 세진소재 ships, reports production and the outgoing inspection;
//   - 대성정밀 reports production that consumes 세진소재's lot, and ships;
//   - 한빛모터스 receives the parts.
//
// The OEM and the tier 1 share one channel, the tier 1 and the tier 2
// another. At the end each company lists what it received and from whom,
// and the program checks that the OEM, although connected to the tier 1,
// never saw a record of the tier-1–tier-2 channel. The tier 1 then exports
// the week as EPCIS 2.0 and bundles its shipment, with everything it links
// to across both channels, as a CAR file anyone can check offline.
//
//	go run ./examples/supplychain
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/node"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// company is one member of the chain with its running node.
type company struct {
	name, brn, short string
	n                *node.Node
	home             string

	mu       sync.Mutex
	received []*protocol.Signed
}

func main() {
	verbose := flag.Bool("v", false, "log what the nodes do")
	flag.Parse()
	if err := run(*verbose, nil); err != nil {
		fmt.Fprintln(os.Stderr, "supplychain:", err)
		os.Exit(1)
	}
}

// auditTrail is what run gives an auditor at the end of the week: the tier
// 1's EPCIS 2.0 export of each of its two channels, and the evidence
// bundle of its shipment to the OEM.
type auditTrail struct {
	epcis map[string][]byte // channel name → EPCIS document
	car   []byte            // the Friday shipment with everything it links to
	order *api.Order        // the OEM's view of its order at the end
	trace *api.TraceNode    // the tier 1's trace of its shipment
	// oemTrace is the OEM's trace of the brake pads it received, back to
	// the tier 2's lot and inspection that the tier 1 disclosed to it.
	oemTrace *api.TraceNode
}

func mustCID(s string) cid.Cid {
	c, _ := cid.Decode(s)
	return c
}

// run plays the week; when ev is not nil, it also keeps the evidence.
func run(verbose bool, ev *auditTrail) error {
	start := time.Now()
	logOut := io.Discard
	if verbose {
		logOut = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	oem := &company{name: "한빛모터스", brn: "1388101230", short: "OEM"}
	t1 := &company{name: "대성정밀", brn: "3128600455", short: "Tier 1"}
	t2 := &company{name: "세진소재", brn: "6098100257", short: "Tier 2"}
	all := []*company{oem, t1, t2}
	names := map[string]string{}
	for _, c := range all {
		if err := c.start(slog.New(slog.NewTextHandler(logOut, nil)).With("company", c.short)); err != nil {
			return err
		}
		defer c.stop()
		names[c.n.ID().String()] = c.name
		fmt.Printf("%-6s  node %s  %s\n", c.short, c.n.ID(), c.name)
	}

	fmt.Println("\n── Setting up channels ─────────────────────────────────────────────")
	up, err := channel(ctx, oem, t1, "한빛-대성 부품거래")
	if err != nil {
		return err
	}
	down, err := channel(ctx, t1, t2, "대성-세진 원자재")
	if err != nil {
		return err
	}
	chanNames := map[cid.Cid]string{up: "한빛-대성 부품거래", down: "대성-세진 원자재"}

	fmt.Println("\n── The week ────────────────────────────────────────────────────────")
	step := func(day string, by *company, ch cid.Cid, kind string, body map[string]any, links []protocol.Link, to *company) (*protocol.Signed, error) {
		s, err := by.n.Publish(ctx, ch, kind, body, links)
		if err != nil {
			return nil, fmt.Errorf("%s publishes %s: %w", by.name, kind, err)
		}
		if err := waitFor(ctx, to, s.CID); err != nil {
			return nil, err
		}
		fmt.Printf("%s  %-6s → %-6s  %-18s %-17s %s\n", day, by.short, to.short, kind, body["docId"], short(s.CID))
		return s, nil
	}

	po, err := step("Mon", oem, up, "order", order(), nil, t1)
	if err != nil {
		return err
	}
	if _, err := step("Mon", t1, up, "order-response", orderResponse(), []protocol.Link{{Rel: "responds-to", CID: po.CID}}, oem); err != nil {
		return err
	}
	matPO, err := step("Mon", t1, down, "order", materialOrder(), nil, t2)
	if err != nil {
		return err
	}
	matLot, err := step("Wed", t2, down, "production-report", materialProduction(), nil, t1)
	if err != nil {
		return err
	}
	matInsp, err := step("Wed", t2, down, "quality-inspection", materialInspection(), []protocol.Link{{Rel: "inspects", CID: matLot.CID}}, t1)
	if err != nil {
		return err
	}
	matShip, err := step("Wed", t2, down, "despatch-advice", materialDespatch(), []protocol.Link{{Rel: "fulfils", CID: matPO.CID}}, t1)
	if err != nil {
		return err
	}
	padLot, err := step("Thu", t1, up, "production-report", padProduction(),
		[]protocol.Link{{Rel: "consumes", CID: matShip.CID}, {Rel: "consumes", CID: matLot.CID}}, oem)
	if err != nil {
		return err
	}
	ship, err := step("Fri", t1, up, "despatch-advice", padDespatch(), []protocol.Link{{Rel: "fulfils", CID: po.CID}, {Rel: "ships", CID: padLot.CID}}, oem)
	if err != nil {
		return err
	}
	rcpt, err := step("Fri", oem, up, "receipt", receipt(), []protocol.Link{{Rel: "receives", CID: ship.CID}}, t1)
	if err != nil {
		return err
	}

	fmt.Println("\n── What each company received, and from whom ───────────────────────")
	for _, c := range all {
		c.mu.Lock()
		recs := append([]*protocol.Signed(nil), c.received...)
		c.mu.Unlock()
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].Record.Time < recs[j].Record.Time })
		fmt.Printf("\n%s (%s) received %d records:\n", c.name, c.short, len(recs))
		for _, s := range recs {
			doc, _ := s.Record.Body["docId"].(string)
			if doc == "" {
				doc = "-"
			}
			fmt.Printf("  %-18s %-17s from %s, in %q\n", s.Record.Kind, doc, names[s.Record.Author.String()], chanNames[s.ChannelOf()])
		}
	}

	fmt.Println("\n── Who sees what ───────────────────────────────────────────────────")
	leaked, err := held(oem, down)
	if err != nil {
		return err
	}
	fromT2 := 0
	oem.mu.Lock()
	for _, s := range oem.received {
		if s.Record.Author == t2.n.ID() {
			fromT2++
		}
	}
	oem.mu.Unlock()
	connected := len(oem.n.Host().Network().ConnsToPeer(t1.n.ID())) > 0
	fmt.Printf("%s is connected to %s: %v\n", oem.name, t1.name, connected)
	fmt.Printf("records of channel %q held by %s (not a member): %d\n", chanNames[down], oem.name, leaked)
	fmt.Printf("records by %s that reached %s: %d\n", t2.name, oem.name, fromT2)
	t1Down, err := held(t1, down)
	if err != nil {
		return err
	}
	t2Down, err := held(t2, down)
	if err != nil {
		return err
	}
	fmt.Printf("records of channel %q held by %s: %d, by %s: %d\n", chanNames[down], t1.name, t1Down, t2.name, t2Down)
	if leaked != 0 || fromT2 != 0 {
		return errors.New("the OEM saw records of a channel it is not in")
	}
	if t1Down != t2Down {
		return fmt.Errorf("the tier 1 holds %d records of its channel with the tier 2, the tier 2 %d", t1Down, t2Down)
	}
	fmt.Println("\n── The OEM's order, line by line ───────────────────────────────────")
	po1, err := oem.n.Order(up, order()["docId"].(string), time.Now())
	if err != nil {
		return fmt.Errorf("the OEM's view of its order: %w", err)
	}
	fmt.Printf("%s v%d: %s (response %s)\n", po1.DocID, po1.Version, po1.Status, po1.Response)
	for _, l := range po1.Lines {
		fmt.Printf("  line %s %-14s ordered %s %s, shipped %s, received %s (accepted %s, rejected %s), open %s\n",
			l.LineID, l.Part, l.Ordered, l.Unit, l.Shipped, l.Received, l.Accepted, l.Rejected, l.Open)
	}
	if ev != nil {
		ev.order = po1
	}

	fmt.Println("\n── Where the brake pads came from: the tier 1's trace ──────────────")
	tr, err := t1.n.Trace(ship.CID, false, 5)
	if err != nil {
		return fmt.Errorf("trace of the shipment: %w", err)
	}
	var show func(n api.TraceNode, indent string)
	show = func(n api.TraceNode, indent string) {
		if n.Seen {
			return // shown above
		}
		if n.Missing {
			fmt.Printf("%s%s → a record not held here (%s)\n", indent, n.Rel, ellipsis(n.CID, 20))
			return
		}
		what := strings.TrimSpace(n.Kind + " " + n.DocID)
		if n.Lot != "" {
			what += " lot " + n.Lot
		}
		who := n.Author
		if name, ok := names[who]; ok {
			who = name // a peer the node knows only by its ID
		}
		how := ""
		if n.Disclosed {
			how = " (disclosed, signature checked)"
		}
		fmt.Printf("%s%s%s by %s, in %q%s\n", indent, map[bool]string{true: n.Rel + " → ", false: ""}[n.Rel != ""], what, who, chanNames[mustCID(n.Channel)], how)
		for _, c := range n.Next {
			show(c, indent+"  ")
		}
	}
	show(*tr, "")
	if ev != nil {
		ev.trace = tr
	}

	fmt.Println("\n── The OEM traces its brake pads, through what the tier 1 disclosed ─")
	// The tier 1 passes the tier 2's lot report and its inspection, as
	// the tier 2 signed them, to its channel with the OEM. The OEM is not
	// in the tier-1–tier-2 channel and never connects to the tier 2.
	var discl []*protocol.Signed
	for _, c := range []cid.Cid{matLot.CID, matInsp.CID} {
		d, err := t1.n.Disclose(ctx, c, up, "세진소재의 원자재 로트와 출하검사, 대성정밀이 공개")
		if err != nil {
			return fmt.Errorf("disclosure of %s: %w", c, err)
		}
		if err := waitFor(ctx, oem, d.CID); err != nil {
			return err
		}
		discl = append(discl, d)
	}
	otr, err := oem.n.Trace(rcpt.CID, false, 8)
	if err != nil {
		return fmt.Errorf("the OEM's trace of the brake pads it received: %w", err)
	}
	show(*otr, "")
	fmt.Printf("%s checked every disclosed record's signature with %s's key, not connected to it: %v\n",
		oem.name, t2.name, len(oem.n.Host().Network().ConnsToPeer(t2.n.ID())) == 0)
	if ev != nil {
		ev.oemTrace = otr
	}

	fmt.Println("\n── Evidence for an auditor ─────────────────────────────────────────")
	for _, ch := range []cid.Cid{up, down} {
		var buf bytes.Buffer
		if err := t1.n.Export(ctx, ch, &buf, api.ExportOptions{Format: "epcis", IDBase: "https://id.daesung.example.kr"}); err != nil {
			return fmt.Errorf("EPCIS export of %q: %w", chanNames[ch], err)
		}
		events := bytes.Count(buf.Bytes(), []byte(`"eventID"`))
		fmt.Printf("%s's EPCIS 2.0 export of %q: %d events, %d bytes, each naming its signed record\n", t1.name, chanNames[ch], events, buf.Len())
		if ev != nil {
			if ev.epcis == nil {
				ev.epcis = map[string][]byte{}
			}
			ev.epcis[chanNames[ch]] = buf.Bytes()
		}
	}
	var bundle bytes.Buffer
	if err := t1.n.Export(ctx, up, &bundle, api.ExportOptions{Format: "car", CID: ship.CID.String(), WithLinks: true, CrossChannel: true}); err != nil {
		return fmt.Errorf("evidence bundle of the shipment: %w", err)
	}
	fmt.Printf("%s's evidence bundle of shipment %s: %d bytes (check it anywhere: sangsaeng verify shipment.car)\n", t1.name, padDespatch()["docId"], bundle.Len())
	if ev != nil {
		ev.car = bundle.Bytes()
	}
	fmt.Printf("\nDone in %.1fs: every record signed, content-addressed, stored durably by its author and its partner, and by nobody else.\n", time.Since(start).Seconds())
	return nil
}

// start creates the company's home and starts its node on loopback.
func (c *company) start(log *slog.Logger) error {
	home, err := os.MkdirTemp("", "sangsaeng-demo-")
	if err != nil {
		return err
	}
	c.home = home
	cfg, err := node.Init(home, node.InitOptions{
		Name:   c.name,
		Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		API:    "127.0.0.1:0",
	})
	if err != nil {
		return err
	}
	cfg.BRN = c.brn
	cfg.MDNS = false // the three nodes find each other through invites
	if c.n, err = node.New(cfg, node.WithLogger(log), node.WithoutNATPortMap()); err != nil {
		return err
	}
	recs, _ := c.n.Watch(cid.Undef)
	go func() {
		for s := range recs {
			if s.Record.Author != c.n.ID() {
				c.mu.Lock()
				c.received = append(c.received, s)
				c.mu.Unlock()
			}
		}
	}()
	return c.n.Start()
}

func (c *company) stop() {
	if c.n != nil {
		c.n.Close()
	}
	os.RemoveAll(c.home)
}

// channel has admin found a channel and invite member into it.
func channel(ctx context.Context, admin, member *company, name string) (cid.Cid, error) {
	ch, err := admin.n.CreateChannel(ctx, name, "", nil)
	if err != nil {
		return cid.Undef, err
	}
	code, err := admin.n.Invite(ctx, ch, member.n.ID())
	if err != nil {
		return cid.Undef, err
	}
	if _, err := member.n.Join(ctx, code); err != nil {
		return cid.Undef, err
	}
	fmt.Printf("%s creates %q and invites %s:\n  %s\n", admin.name, name, member.name, ellipsis(code, 72))
	fmt.Printf("%s joins with the code: channel %s\n", member.name, short(ch))
	return ch, nil
}

// waitFor waits until c holds the record.
func waitFor(ctx context.Context, c *company, id cid.Cid) error {
	for {
		if ok, err := c.n.Store().Has(id); err != nil {
			return err
		} else if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not receive %s: %w", c.name, id, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// held counts the records of ch that c holds.
func held(c *company, ch cid.Cid) (int, error) {
	total, cursor := 0, ""
	for {
		recs, next, err := c.n.Store().ByChannel(ch, 500, cursor)
		if err != nil {
			return 0, err
		}
		total += len(recs)
		if next == "" {
			return total, nil
		}
		cursor = next
	}
}

func short(c cid.Cid) string { return ellipsis(c.String(), 20) }

func ellipsis(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// The week's documents. Parties carry their 사업자등록번호.

var (
	hanbit  = map[string]any{"scheme": "kr-brn", "id": "1388101230", "name": "한빛모터스"}
	daesung = map[string]any{"scheme": "kr-brn", "id": "3128600455", "name": "대성정밀"}
	sejin   = map[string]any{"scheme": "kr-brn", "id": "6098100257", "name": "세진소재"}
	pad     = map[string]any{"buyerPartNo": "58101-3X000", "supplierPartNo": "DS-BP-3X00", "description": "프론트 브레이크 패드 어셈블리"}
	mat     = map[string]any{"buyerPartNo": "DS-FR-220", "supplierPartNo": "SJ-FR-220", "description": "마찰재 컴파운드"}
)

func qty(v, unit string) map[string]any { return map[string]any{"value": v, "unit": unit} }

func order() map[string]any {
	return map[string]any{
		"docId": "PO-HB-2611-001", "docVersion": int64(1), "issuedAt": "2026-11-23T09:00:00+09:00",
		"buyer": hanbit, "seller": daesung, "currency": "KRW", "orderType": "standard",
		"lines": []any{map[string]any{
			"lineId": "10", "item": pad, "quantity": qty("2400", "H87"),
			"requestedDelivery": map[string]any{"date": "2026-11-27"},
			"unitPrice":         map[string]any{"amount": "8350", "currency": "KRW"},
		}},
	}
}

func orderResponse() map[string]any {
	return map[string]any{
		"docId": "OR-DS-2611-014", "docVersion": int64(1), "issuedAt": "2026-11-23T11:30:00+09:00",
		"orderRef": map[string]any{"docId": "PO-HB-2611-001", "docVersion": int64(1)},
		"seller":   daesung, "buyer": hanbit, "responseCode": "accepted",
	}
}

func materialOrder() map[string]any {
	return map[string]any{
		"docId": "PO-DS-2611-077", "docVersion": int64(1), "issuedAt": "2026-11-23T13:00:00+09:00",
		"buyer": daesung, "seller": sejin, "currency": "KRW",
		"lines": []any{map[string]any{
			"lineId": "1", "item": mat, "quantity": qty("400", "KGM"),
			"requestedDelivery": map[string]any{"date": "2026-11-25"},
		}},
	}
}

func materialProduction() map[string]any {
	return map[string]any{
		"docId": "PR-SJ-261124-03", "docVersion": int64(1), "producer": sejin,
		"site": map[string]any{"scheme": "internal", "id": "GIMHAE-1", "name": "김해 1공장"},
		"item": mat, "lotId": "M261124-03", "quantityGood": qty("420", "KGM"),
		"completedAt": "2026-11-24T17:40:00+09:00", "quantityScrap": qty("6.5", "KGM"),
		"customerOrderRef": map[string]any{"docId": "PO-DS-2611-077", "lineId": "1"},
	}
}

func materialInspection() map[string]any {
	return map[string]any{
		"docId": "QI-SJ-261125-01", "docVersion": int64(1), "inspectedAt": "2026-11-25T07:10:00+09:00",
		"inspector": sejin, "inspectionType": "outgoing", "item": mat, "lotId": "M261124-03",
		"sampleSize": int64(5), "result": "pass",
		"characteristics": []any{map[string]any{
			"name": "비중", "nominal": "2.45", "lowerLimit": "2.40", "upperLimit": "2.50",
			"measured": []any{"2.44", "2.46", "2.45"}, "result": "pass",
		}},
	}
}

func materialDespatch() map[string]any {
	return map[string]any{
		"docId": "DN-SJ-261125-01", "docVersion": int64(1), "issuedAt": "2026-11-25T07:30:00+09:00",
		"despatchedAt": "2026-11-25T08:00:00+09:00", "seller": sejin, "buyer": daesung,
		"lines": []any{map[string]any{
			"lineId": "1", "orderRef": map[string]any{"docId": "PO-DS-2611-077", "lineId": "1"},
			"item": mat, "quantity": qty("400", "KGM"), "lotIds": []any{"M261124-03"},
		}},
	}
}

func padProduction() map[string]any {
	return map[string]any{
		"docId": "PR-DS-261126-A1", "docVersion": int64(1), "producer": daesung,
		"site": map[string]any{"scheme": "internal", "id": "CHANGWON-L2", "name": "창원공장 2라인"},
		"item": pad, "lotId": "L261126-A1", "quantityGood": qty("2400", "H87"),
		"completedAt": "2026-11-26T18:00:00+09:00", "quantityScrap": qty("31", "H87"),
		"customerOrderRef": map[string]any{"docId": "PO-HB-2611-001", "lineId": "10"},
		"consumed": []any{map[string]any{
			"item": mat, "lotId": "M261124-03", "quantity": qty("388.2", "KGM"), "supplier": sejin,
			"supplierDespatchRef": map[string]any{"docId": "DN-SJ-261125-01"},
		}},
	}
}

func padDespatch() map[string]any {
	return map[string]any{
		"docId": "DN-DS-261127-01", "docVersion": int64(1), "issuedAt": "2026-11-27T06:30:00+09:00",
		"despatchedAt": "2026-11-27T07:00:00+09:00", "seller": daesung, "buyer": hanbit,
		"shipTo": map[string]any{"scheme": "internal", "id": "ULSAN-P2-DOCK3", "name": "울산 2공장 3번 도크"},
		"lines": []any{map[string]any{
			"lineId": "1", "orderRef": map[string]any{"docId": "PO-HB-2611-001", "lineId": "10"},
			"item": pad, "quantity": qty("2400", "H87"), "lotIds": []any{"L261126-A1"},
		}},
		"carrier": "경남물류", "trackingNo": "KN-261127-88",
	}
}

func receipt() map[string]any {
	return map[string]any{
		"docId": "GR-HB-261127-193", "docVersion": int64(1), "issuedAt": "2026-11-27T11:00:00+09:00",
		"receivedAt": "2026-11-27T09:42:00+09:00", "buyer": hanbit, "seller": daesung,
		"despatchRef": map[string]any{"docId": "DN-DS-261127-01", "docVersion": int64(1)},
		"lines": []any{map[string]any{
			"lineId": "1", "item": pad, "quantityReceived": qty("2400", "H87"),
			"quantityAccepted": qty("2400", "H87"),
		}},
	}
}
