package interchange

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/internal/gs1test"

	"github.com/sangsaeng/sangsaeng/protocol"
)

func gs1Schema(t *testing.T) *GS1Schema {
	t.Helper()
	s, err := LoadGS1Schema(filepath.Join(gs1test.Dir(t), "JSON-Schema"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGS1SchemaChecks: the validator passes GS1's examples and refuses
// its invalid documents, so a pass below means something.
func TestGS1SchemaChecks(t *testing.T) {
	s := gs1Schema(t)
	dir := gs1test.Dir(t)
	good, _ := filepath.Glob(filepath.Join(dir, "examples", "*.jsonld"))
	bad, _ := filepath.Glob(filepath.Join(dir, "invalid", "*.json"))
	if len(good) == 0 || len(bad) == 0 {
		t.Fatal("no GS1 files")
	}
	for _, f := range good {
		b, _ := os.ReadFile(f)
		if err := s.Validate(b); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
	for _, f := range bad {
		b, _ := os.ReadFile(f)
		if err := s.Validate(b); err == nil {
			t.Errorf("%s passed", filepath.Base(f))
		}
	}
}

func sealed(t *testing.T, kind string, body map[string]any) EPCISRecord {
	t.Helper()
	if err := protocol.ValidateBody(kind, body); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return EPCISRecord{CID: protocol.Sum([]byte(kind + jsonOf(body))), Kind: kind, Body: body}
}

// exportRecords is one of each kind that maps to an event.
func exportRecords(t *testing.T) []EPCISRecord {
	brn := func(id string) map[string]any { return map[string]any{"scheme": "kr-brn", "id": id} }
	q := func(v, u string) map[string]any { return map[string]any{"value": v, "unit": u} }
	item := func(p string) map[string]any { return map[string]any{"supplierPartNo": p} }
	return []EPCISRecord{
		sealed(t, "despatch-advice", map[string]any{"docId": "DN-1", "docVersion": int64(1), "issuedAt": "2026-11-25T14:30:00+09:00", "despatchedAt": "2026-11-25T14:30:00+09:00",
			"seller": brn("3128600455"), "buyer": brn("1388101230"), "shipTo": map[string]any{"scheme": "internal", "id": "울산 2공장"},
			"lines": []any{map[string]any{"lineId": "1", "orderRef": map[string]any{"docId": "PO-1", "lineId": "1"}, "item": item("52910-2S000"), "quantity": q("600", "H87"), "lotIds": []any{"L-2611-01"}},
				map[string]any{"lineId": "2", "orderRef": map[string]any{"docId": "PO-1", "lineId": "2"}, "item": item("B-100"), "quantity": q("350", "H87"), "lotIds": []any{"L1", "L2"}}}}),
		sealed(t, "receipt", map[string]any{"docId": "GR-1", "docVersion": int64(1), "issuedAt": "2026-11-26T09:00:00+09:00", "receivedAt": "2026-11-26T09:00:00+09:00",
			"buyer": brn("1388101230"), "seller": brn("3128600455"), "despatchRef": map[string]any{"docId": "DN-1"},
			"lines": []any{map[string]any{"lineId": "1", "item": item("52910-2S000"), "quantityReceived": q("600", "H87"), "quantityAccepted": q("598", "H87")}}}),
		sealed(t, "production-report", map[string]any{"docId": "PR-1", "docVersion": int64(1), "producer": brn("3128600455"), "site": map[string]any{"scheme": "internal", "id": "F1"},
			"item": item("52910-2S000"), "lotId": "L-2611-01", "quantityGood": q("600", "H87"), "completedAt": "2026-11-24T18:00:00+09:00", "workOrderId": "WO-9",
			"consumed": []any{map[string]any{"item": item("FM-7"), "lotId": "M-1", "quantity": q("12.5", "KGM")}}}),
		sealed(t, "production-report", map[string]any{"docId": "PR-2", "docVersion": int64(1), "producer": brn("6098100257"), "site": map[string]any{"scheme": "internal", "id": "F9"},
			"item": item("FM-7"), "lotId": "M-1", "quantityGood": q("500", "KGM"), "completedAt": "2026-11-20T18:00:00+09:00"}),
		sealed(t, "quality-inspection", map[string]any{"docId": "QI-1", "docVersion": int64(1), "inspectedAt": "2026-11-24T19:00:00+09:00", "inspector": brn("3128600455"),
			"inspectionType": "outgoing", "item": item("52910-2S000"), "lotId": "L-2611-01", "sampleSize": int64(5), "result": "pass",
			"characteristics": []any{map[string]any{"name": "두께", "nominal": "12.0", "unit": "MMT", "measured": []any{"12.01", "11.98"}, "result": "pass"}}}),
		sealed(t, "inventory", map[string]any{"docId": "ST-1", "docVersion": int64(1), "asOf": "2026-11-30T23:59:00+09:00", "owner": brn("3128600455"),
			"site": map[string]any{"scheme": "internal", "id": "W1"}, "item": item("52910-2S000"), "quantity": q("1200", "H87"), "stockStatus": "available"}),
	}
}

// TestEPCISExportValidates: one record of each kind that maps to an event,
// exported as an EPCIS document, passes GS1's EPCIS 2.0 JSON Schema, each
// event names its record, and the document imports back as events.
func TestEPCISExportValidates(t *testing.T) {
	s := gs1Schema(t)
	var buf bytes.Buffer
	w, err := NewEPCISWriter(&buf, time.Date(2026, 12, 1, 9, 0, 0, 0, time.FixedZone("KST", 9*3600)))
	if err != nil {
		t.Fatal(err)
	}
	recs := exportRecords(t)
	for _, r := range recs {
		ev, ok, err := EPCISEvent(r, "https://id.daesung.example.kr/")
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", r.Kind, ok, err)
		}
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(buf.Bytes()); err != nil {
		t.Fatalf("the export does not pass GS1's schema: %v\n%s", err, buf.String())
	}
	var doc struct {
		Body struct {
			Events []map[string]any `json:"eventList"`
		} `json:"epcisBody"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for i, ev := range doc.Body.Events {
		if ev["sangsaeng:record"] != recs[i].CID.String() || !strings.HasPrefix(ev["eventID"].(string), "ni:///sha-256;") {
			t.Errorf("event %d: record %v, eventID %v", i, ev["sangsaeng:record"], ev["eventID"])
		}
	}
	if doc.Body.Events[2]["type"] != "TransformationEvent" || doc.Body.Events[3]["action"] != "ADD" {
		t.Errorf("production reports: %v / %v", doc.Body.Events[2]["type"], doc.Body.Events[3]["action"])
	}
	n, errs, err := ReadEPCIS(bytes.NewReader(buf.Bytes()), "export.jsonld", func(int, map[string]any) error { return nil })
	if err != nil || len(errs) != 0 || n != len(recs) {
		t.Fatalf("reading the export back: %d events, %v, %v", n, errs, err)
	}
	if _, ok, _ := EPCISEvent(EPCISRecord{Kind: "order"}, "https://x"); ok {
		t.Error("an order became an event")
	}
}
