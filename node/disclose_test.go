package node

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestDisclosureAcrossTiers: the tier 2 publishes an inspection in its
// channel with the tier 1; the tier 1 discloses it to its channel with the
// OEM. The OEM, which is not in the tier-1–tier-2 channel and never
// connects to the tier 2, verifies the original's signature and names the
// tier 2 as its author, and traces through it. A tampered disclosure is
// refused by the OEM's node, and a record whose terms forbid disclosure is
// refused by the tier 1's.
func TestDisclosureAcrossTiers(t *testing.T) {
	oem, t1, t2 := startNode(t, "OEM"), startNode(t, "T1"), startNode(t, "T2")
	down := link(t, t1, t2, "t1-t2")
	up := link(t, t1, oem, "oem-t1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lot, err := t2.Publish(ctx, down, "production-report", map[string]any{"docId": "PR-1", "docVersion": int64(1), "producer": map[string]any{"scheme": "vendor", "id": "T2"},
		"site": map[string]any{"scheme": "internal", "id": "F1"}, "item": map[string]any{"supplierPartNo": "FM-7"}, "lotId": "M-1",
		"quantityGood": map[string]any{"value": "500", "unit": "KGM"}, "completedAt": "2026-11-24T18:00:00+09:00"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	insp, err := t2.Publish(ctx, down, "quality-inspection", map[string]any{"docId": "QI-1", "docVersion": int64(1), "inspectedAt": "2026-11-25T09:00:00+09:00",
		"inspector": map[string]any{"scheme": "vendor", "id": "T2"}, "inspectionType": "outgoing", "item": map[string]any{"supplierPartNo": "FM-7"},
		"lotId": "M-1", "sampleSize": int64(5), "result": "pass"}, []protocol.Link{{Rel: "inspects", CID: lot.CID}})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := t2.Publish(ctx, down, "note", map[string]any{"text": "our price list", "terms": map[string]any{"disclose": false}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "T1 to hold T2's records", 30*time.Second, func() bool { return has(t1, insp.CID) && has(t1, secret.CID) })

	d, err := t1.Disclose(ctx, insp.CID, up, "세진소재의 출하검사 성적서")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the OEM to hold the disclosure", 30*time.Second, func() bool { return has(oem, d.CID) })
	if has(oem, insp.CID) || len(oem.Host().Network().ConnsToPeer(t2.ID())) > 0 {
		t.Fatal("the OEM holds the tier 2's record itself, or is connected to the tier 2: the test shows nothing")
	}
	v := oem.verify(d.Envelope)
	if !v.OK || v.Disclosed == nil || v.Disclosed.Author != t2.ID().String() || v.Disclosed.CID != insp.CID.String() || v.Disclosed.Channel != down.String() {
		t.Fatalf("the OEM's verify of the disclosure: %+v %+v", v, v.Disclosed)
	}
	tr, err := oem.Trace(d.CID, false, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Next) != 1 || !tr.Next[0].Disclosed || tr.Next[0].Kind != "quality-inspection" || tr.Next[0].Author == "" || len(tr.Next[0].Next) != 1 || !tr.Next[0].Next[0].Missing {
		t.Fatalf("the OEM's trace through the disclosure: %+v", tr)
	}

	// The author's terms hold.
	if _, err := t1.Disclose(ctx, secret.CID, up, ""); err == nil || !strings.Contains(err.Error(), "forbids disclosing") {
		t.Fatalf("disclosing a record whose terms forbid it: %v", err)
	}
	// A disclosure with one byte of the original changed, signed by the
	// tier 1 and handed to the OEM as gossip would, is refused there.
	body := map[string]any{"cid": insp.CID.String(), "original": base64.RawURLEncoding.EncodeToString(insp.Envelope)}
	o := []byte(body["original"].(string))
	o[len(o)/3] ^= 1
	body["original"] = string(o)
	bad := sealLinked(t, t1, up, protocol.KindDisclosure, body, 1, cid.Undef, protocol.Link{Rel: RelDiscloses, CID: insp.CID})
	if _, err := oem.ingest(up, bad.Envelope, t1.ID(), opGossip); !errors.Is(err, protocol.ErrInvalidBody) {
		t.Fatalf("a tampered disclosure at the OEM: %v", err)
	}
	// A disclosure whose link is not the record it carries is refused too.
	body["original"] = base64.RawURLEncoding.EncodeToString(insp.Envelope)
	elsewhere := sealLinked(t, t1, up, protocol.KindDisclosure, body, 1, cid.Undef, protocol.Link{Rel: RelDiscloses, CID: lot.CID})
	if _, err := oem.ingest(up, elsewhere.Envelope, t1.ID(), opGossip); !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("a disclosure linking another record: %v", err)
	}
	if has(oem, bad.CID) {
		t.Fatal("the OEM stored a tampered disclosure")
	}
}

// footprintBody is a carbon-footprint of pcf kgCO2e per one unit.
func footprintBody(company, product, unit, pcf string) map[string]any {
	return map[string]any{"pfId": "3893bb5d-da16-4dc1-9185-11d97476c254", "specVersion": "2.0.0", "version": int64(0), "created": "2026-11-20T10:00:00+09:00",
		"status": "Active", "companyName": company, "companyIds": []any{"urn:x:" + company}, "productIds": []any{"urn:x:" + product}, "productName": product,
		"boundary": "Cradle-to-gate", "declaredUnit": unit, "declaredUnitAmount": "1", "productMassPerDeclaredUnit": "1",
		"referencePeriodStart": "2026-01-01T00:00:00+09:00", "referencePeriodEnd": "2026-12-31T00:00:00+09:00", "geography": "KR",
		"pcfExcludingBiogenicUptake": pcf, "pcfIncludingBiogenicUptake": pcf, "crossSectoralStandards": []any{"ISO Standard 14067"},
		"ipccCharacterizationFactors": []any{"AR6"}, "exemptedEmissionsPercent": "0", "packagingEmissionsIncluded": false}
}

// TestFootprintAddsUp: the tier 2's lot M-1 has a footprint of 2 kgCO2e a
// kilogram; the tier 1's lot P-1 of 100 pieces consumed 12.5 kg of it and
// its own process adds 0.5 kgCO2e a piece. The OEM, to which the tier 1
// disclosed the tier 2's lot report and footprint, adds P-1 up to 75
// kgCO2e, 0.75 a piece, each share with its signer.
func TestFootprintAddsUp(t *testing.T) {
	oem, t1, t2 := startNode(t, "OEM"), startNode(t, "T1"), startNode(t, "T2")
	down := link(t, t1, t2, "t1-t2")
	up := link(t, t1, oem, "oem-t1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	party := func(id string) map[string]any { return map[string]any{"scheme": "vendor", "id": id} }
	m1, err := t2.Publish(ctx, down, "production-report", map[string]any{"docId": "PR-M1", "docVersion": int64(1), "producer": party("T2"),
		"site": map[string]any{"scheme": "internal", "id": "F9"}, "item": map[string]any{"supplierPartNo": "FM-7"}, "lotId": "M-1",
		"quantityGood": map[string]any{"value": "500", "unit": "KGM"}, "completedAt": "2026-11-20T18:00:00+09:00"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp2, err := t2.Publish(ctx, down, "carbon-footprint", footprintBody("T2", "FM-7", "kilogram", "2.0"), []protocol.Link{{Rel: RelDescribes, CID: m1.CID}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "T1 to hold T2's records", 30*time.Second, func() bool { return has(t1, fp2.CID) })
	p1, err := t1.Publish(ctx, up, "production-report", map[string]any{"docId": "PR-P1", "docVersion": int64(1), "producer": party("T1"),
		"site": map[string]any{"scheme": "internal", "id": "F1"}, "item": map[string]any{"supplierPartNo": "BP-1"}, "lotId": "P-1",
		"quantityGood": map[string]any{"value": "100", "unit": "H87"}, "completedAt": "2026-11-24T18:00:00+09:00",
		"consumed": []any{map[string]any{"item": map[string]any{"supplierPartNo": "FM-7"}, "lotId": "M-1", "quantity": map[string]any{"value": "12.5", "unit": "KGM"}}}},
		[]protocol.Link{{Rel: "consumes", CID: m1.CID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := t1.Publish(ctx, up, "carbon-footprint", footprintBody("T1", "BP-1", "piece", "0.5"), []protocol.Link{{Rel: RelDescribes, CID: p1.CID}}); err != nil {
		t.Fatal(err)
	}
	// Before the disclosures, the OEM's sum is incomplete and says why.
	waitFor(t, "the OEM to hold P-1", 30*time.Second, func() bool { return has(oem, p1.CID) })
	waitFor(t, "the OEM to hold P-1's footprint", 30*time.Second, func() bool {
		p, err := oem.PCF(p1.CID)
		return err == nil && p.Own != nil
	})
	if p, _ := oem.PCF(p1.CID); p.Complete || len(p.Problems) != 1 || !strings.Contains(p.Problems[0], `consumed lot "M-1"`) {
		t.Fatalf("the OEM's sum before the disclosures: %+v", p)
	}
	for _, c := range []protocol.Link{{CID: m1.CID}, {CID: fp2.CID}} {
		d, err := t1.Disclose(ctx, c.CID, up, "")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the OEM to hold a disclosure", 30*time.Second, func() bool { return has(oem, d.CID) })
	}
	p, err := oem.PCF(p1.CID)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Complete || p.Total != "75" || p.PerUnit != "0.75" || p.Own == nil || p.Own.Share != "50" || len(p.Inputs) != 1 {
		t.Fatalf("the OEM's sum: %+v", p)
	}
	in := p.Inputs[0]
	if in.Lot != "M-1" || in.Quantity != "12.5" || in.Share != "25" || !in.Disclosed || in.Footprint != fp2.CID.String() || in.Signer == "" {
		t.Fatalf("the consumed lot's share: %+v", in)
	}
}
