package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sangsaeng/sangsaeng/evidence"
	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/internal/gs1test"
	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestDemo runs the README's demo end to end: three real nodes, two
// channels, the week's records delivered, and nothing leaked to the OEM;
// the tier 1's EPCIS export of each channel passes GS1's EPCIS 2.0 JSON
// Schema (read from ../shared/epcis, as the other GS1 tests do).
func TestDemo(t *testing.T) {
	var ev auditTrail
	if err := run(false, &ev); err != nil {
		t.Fatal(err)
	}
	dir := gs1test.Dir(t)
	// The OEM sees its order shipped and received in full.
	if ev.order == nil || ev.order.Status != "done" || len(ev.order.Lines) == 0 || ev.order.Lines[0].Shipped == "0" || ev.order.Lines[0].Open != "0" {
		t.Fatalf("the OEM's order at the end of the week: %+v", ev.order)
	}
	// The tier 1's trace of its shipment reaches the tier 2's material lot
	// and its inspection, across both channels.
	kindsReached := map[string]bool{}
	var walk func(n api.TraceNode)
	walk = func(n api.TraceNode) {
		kindsReached[n.Kind+" "+n.DocID] = true
		for _, c := range n.Next {
			walk(c)
		}
	}
	walk(*ev.trace)
	if !kindsReached["production-report "+materialProduction()["docId"].(string)] || !kindsReached["despatch-advice "+materialDespatch()["docId"].(string)] ||
		!kindsReached["quality-inspection "+materialInspection()["docId"].(string)] {
		t.Fatalf("the trace of the shipment reached %v", kindsReached)
	}
	// The OEM traces the brake pads it received back to the tier 2's lot
	// and its inspection, both known only as the tier 1 disclosed them,
	// their signatures checked.
	var disclosedKinds []string
	var walkO func(n api.TraceNode)
	walkO = func(n api.TraceNode) {
		if n.Disclosed {
			disclosedKinds = append(disclosedKinds, n.Kind+" "+n.DocID)
		}
		for _, c := range n.Next {
			walkO(c)
		}
	}
	walkO(*ev.oemTrace)
	if !slices.Contains(disclosedKinds, "production-report "+materialProduction()["docId"].(string)) ||
		!slices.Contains(disclosedKinds, "quality-inspection "+materialInspection()["docId"].(string)) {
		t.Fatalf("the OEM's trace reached, disclosed: %v", disclosedKinds)
	}
	// The shipment's bundle checks out offline, across both channels,
	// and not with any bit flipped.
	rep, err := evidence.Verify(bytes.NewReader(ev.car))
	if err != nil {
		t.Fatalf("the shipment's bundle: %v", err)
	}
	kinds := map[string]int{}
	for _, r := range rep.Records {
		kinds[r.Kind]++
	}
	if rep.Selected != 1 || len(rep.Channels) != 2 || kinds["production-report"] != 2 || kinds["despatch-advice"] != 2 || kinds["order"] != 2 {
		t.Fatalf("bundle: %d selected, %d channels, kinds %v", rep.Selected, len(rep.Channels), kinds)
	}
	for i := 0; i < len(ev.car); i += 7 {
		bad := bytes.Clone(ev.car)
		bad[i] ^= 0x10
		if _, err := evidence.Verify(bytes.NewReader(bad)); err == nil {
			t.Fatalf("the bundle with byte %d flipped verifies", i)
		}
	}
	schema, err := interchange.LoadGS1Schema(filepath.Join(dir, "JSON-Schema"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.epcis) != 2 {
		t.Fatalf("%d EPCIS exports, want one per channel", len(ev.epcis))
	}
	// The OEM's receipt refers to the order its shipment fulfils.
	var up struct {
		Body struct {
			Events []struct {
				BizStep string `json:"bizStep"`
				BT      []struct {
					Type string `json:"type"`
				} `json:"bizTransactionList"`
			} `json:"eventList"`
		} `json:"epcisBody"`
	}
	if err := json.Unmarshal(ev.epcis["한빛-대성 부품거래"], &up); err != nil {
		t.Fatal(err)
	}
	receiving := ""
	for _, e := range up.Body.Events {
		if e.BizStep == "receiving" {
			for _, b := range e.BT {
				receiving += b.Type + " "
			}
		}
	}
	if receiving != "po desadv recadv " {
		t.Errorf("the receipt's bizTransactions: %q, want po desadv recadv", receiving)
	}
	for name, doc := range ev.epcis {
		if err := schema.Validate(doc); err != nil {
			t.Errorf("the EPCIS export of %q does not pass GS1's schema: %v\n%s", name, err, doc)
		}
		n, errs, err := interchange.ReadEPCIS(bytes.NewReader(doc), name, func(int, map[string]any) error { return nil })
		if err != nil || len(errs) != 0 || n < 2 {
			t.Errorf("%q: %d events read back, %v, %v", name, n, errs, err)
		}
	}
}
