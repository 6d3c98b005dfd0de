package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/internal/gs1test"
)

// allKinds is every kind this package must know.
var allKinds = []string{
	KindCarbonFootprint, KindChannelGenesis, KindChannelMembers, KindDespatchAdvice, KindDisclosure, KindEPCISEvent,
	KindForecast, KindHeadsReceipt, KindInventory, KindKeyEvent, KindKeys, KindNote, KindOrder, KindOrderChange, KindOrderResponse,
	KindProductionReport, KindProfile, KindQualityInspection, KindReceipt,
}

// decodeBody reads JSON into the value model: integers as int64, other
// numbers as float64.
func decodeBody(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the body")
	}
	m, ok := toModel(v).(map[string]any)
	if !ok {
		return nil, errors.New("not an object")
	}
	return m, nil
}

func toModel(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(v), 64)
		return f
	case []any:
		for i, e := range v {
			v[i] = toModel(e)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = toModel(e)
		}
	}
	return v
}

// loadBody returns the example body of kind from testdata/bodies.
func loadBody(tb testing.TB, kind string) map[string]any {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "bodies", kind+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	body, err := decodeBody(data)
	if err != nil {
		tb.Fatalf("testdata/bodies/%s.json: %v", kind, err)
	}
	return body
}

func TestSchemasCompile(t *testing.T) {
	s := loadSchemas() // afresh, not through the sync.Once
	if s.err != nil {
		t.Fatal(s.err)
	}
	if !slices.Equal(s.kinds, allKinds) {
		t.Errorf("kinds = %v, want %v", s.kinds, allKinds)
	}
	for _, k := range allKinds {
		if s.compiled[k] == nil {
			t.Errorf("%s: no compiled schema", k)
		}
	}
}

func TestKindsCoverSchemaFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("schemas", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fromFiles []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if name != "defs" {
			fromFiles = append(fromFiles, name)
		}
	}
	slices.Sort(fromFiles)
	if got := Kinds(); !slices.Equal(got, fromFiles) {
		t.Errorf("Kinds() = %v, files in schemas/ = %v", got, fromFiles)
	}
	if !slices.IsSorted(Kinds()) {
		t.Error("Kinds() is not sorted")
	}
	k := Kinds()
	k[0] = "changed"
	if Kinds()[0] == "changed" {
		t.Error("Kinds() returns the package's own slice")
	}
	for _, kind := range allKinds {
		if !KnownKind(kind) {
			t.Errorf("KnownKind(%q) = false", kind)
		}
	}
	for _, kind := range []string{"", "defs", "Order", "orders", "../defs"} {
		if KnownKind(kind) {
			t.Errorf("KnownKind(%q) = true", kind)
		}
	}
}

func TestSchemaBytes(t *testing.T) {
	for _, kind := range Kinds() {
		raw, ok := Schema(kind)
		if !ok {
			t.Fatalf("Schema(%q) not found", kind)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("Schema(%q): %v", kind, err)
		}
		if want := SchemaBaseURL + kind + "/1.json"; doc["$id"] != want {
			t.Errorf("Schema(%q) $id = %v, want %s", kind, doc["$id"], want)
		}
		if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("Schema(%q) $schema = %v", kind, doc["$schema"])
		}
	}
	if _, ok := Schema("defs"); ok {
		t.Error(`Schema("defs") found: defs is not a kind`)
	}
	var defs map[string]any
	if err := json.Unmarshal(SchemaDefs(), &defs); err != nil {
		t.Fatal(err)
	}
	if defs["$id"] != SchemaDefsID {
		t.Errorf("defs $id = %v, want %s", defs["$id"], SchemaDefsID)
	}
}

// TestSchemaBounds holds every schema to bounded strings and arrays and to
// closed objects, except where a kind is meant to stay open.
func TestSchemaBounds(t *testing.T) {
	open := map[string]bool{
		"epcis-event#":                          true, // GS1's shape, open by design
		"epcis-event#/$defs/quantityList/items": true, // GS1's quantity element, open too
		"carbon-footprint#/properties/original": true, // a foreign document, passed through
	}
	files, _ := filepath.Glob(filepath.Join("schemas", "*.json"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		var walk func(v any, at string, inCond bool)
		walk = func(v any, at string, inCond bool) {
			switch v := v.(type) {
			case map[string]any:
				switch v["type"] {
				case "string":
					p, _ := v["pattern"].(string)
					if _, ok := v["maxLength"]; !ok && (p == "" || strings.ContainsAny(p, "*+")) {
						t.Errorf("%s%s: string without maxLength or a bounded pattern", name, at)
					}
				case "array":
					if _, ok := v["maxItems"]; !ok {
						t.Errorf("%s%s: array without maxItems", name, at)
					}
				case "object":
					_, ap := v["additionalProperties"]
					_, up := v["unevaluatedProperties"]
					if !ap && !up && !open[name+"#"+at] {
						t.Errorf("%s%s: object without additionalProperties", name, at)
					}
				}
				_, props := v["properties"]
				_, ref := v["$ref"]
				if props && v["type"] == nil && !ref && !inCond {
					t.Errorf("%s%s: properties without a type", name, at)
				}
				for k, e := range v {
					walk(e, at+"/"+k, inCond || k == "if" || k == "then" || k == "else")
				}
			case []any:
				for i, e := range v {
					walk(e, at+"/"+strconv.Itoa(i), inCond)
				}
			}
		}
		walk(doc, "", false)
	}
}

// TestOrderChangeHasOrderFields holds order-change to be the order's fields
// and more, since it is a full replacement of an order.
func TestOrderChangeHasOrderFields(t *testing.T) {
	props := func(kind string) (map[string]any, []any) {
		raw, _ := Schema(kind)
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		return doc["properties"].(map[string]any), doc["required"].([]any)
	}
	order, orderReq := props(KindOrder)
	change, changeReq := props(KindOrderChange)
	for p := range order {
		if _, ok := change[p]; !ok {
			t.Errorf("order-change lacks order field %q", p)
		}
	}
	for _, r := range orderReq {
		if !slices.Contains(changeReq, r) {
			t.Errorf("order-change does not require %v", r)
		}
	}
}

func TestValidBodies(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bodies", "*.json"))
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	slices.Sort(names)
	if !slices.Equal(names, Kinds()) {
		t.Errorf("testdata/bodies has %v, want one body per kind %v", names, Kinds())
	}
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			if err := ValidateBody(kind, loadBody(t, kind)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestValidVariants are bodies that must pass besides the examples.
func TestValidVariants(t *testing.T) {
	tests := []struct {
		name, kind string
		edit       func(b map[string]any)
	}{
		{"order with Go ints", KindOrder, func(b map[string]any) { b["docVersion"] = 1 }},
		{"order with []map lines", KindOrder, func(b map[string]any) {
			var lines []map[string]any
			for _, l := range b["lines"].([]any) {
				lines = append(lines, l.(map[string]any))
			}
			b["lines"] = lines
		}},
		{"order, supplier part number only", KindOrder, func(b map[string]any) {
			set(b, "lines/0/item", map[string]any{"supplierPartNo": "0012-A"})
		}},
		{"order, UTC time", KindOrder, func(b map[string]any) { b["issuedAt"] = "2025-03-04T00:30:00.123Z" }},
		{"order, minimal", KindOrder, func(b map[string]any) {
			for _, k := range []string{"shipTo", "currency", "incoterm", "paymentTerms", "contractRef", "orderType", "note"} {
				delete(b, k)
			}
		}},
		{"order, party schemes", KindOrder, func(b map[string]any) {
			set(b, "buyer", map[string]any{"scheme": "gln", "id": "8801234567893"})
			set(b, "seller", map[string]any{"scheme": "peer", "id": "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"})
		}},
		{"order, duns and bpnl", KindOrder, func(b map[string]any) {
			set(b, "buyer", map[string]any{"scheme": "duns", "id": "688123456"})
			set(b, "seller", map[string]any{"scheme": "bpnl", "id": "BPNL00000003AYRE"})
		}},
		{"order-response accepted without lines", KindOrderResponse, func(b map[string]any) {
			b["responseCode"] = "accepted"
			delete(b, "lines")
			delete(b, "reason")
		}},
		{"order-change cancelled", KindOrderChange, func(b map[string]any) { b["status"] = "cancelled" }},
		{"production-report with serials and completedAt", KindProductionReport, func(b map[string]any) {
			delete(b, "lotId")
			delete(b, "period")
			b["serials"] = []any{"SN-0001", "SN-0002"}
			b["completedAt"] = "2025-03-10T17:00:00+09:00"
		}},
		{"quality-inspection with serials", KindQualityInspection, func(b map[string]any) {
			delete(b, "lotId")
			b["serials"] = []string{"SN-0001"}
		}},
		{"carbon-footprint original is free", KindCarbonFootprint, func(b map[string]any) {
			b["original"] = map[string]any{
				"anything": []any{1.5, int64(2), nil, true, map[string]any{"scheme": "kr-brn", "id": "1"}},
			}
		}},
		{"epcis TransformationEvent without action", KindEPCISEvent, func(b map[string]any) {
			b["type"] = "TransformationEvent"
			delete(b, "action")
		}},
		{"epcis extension fields", KindEPCISEvent, func(b map[string]any) {
			b["example:myField"] = map[string]any{"@xmlns:example": "https://ns.example.com/epcis"}
		}},
		{"channel-members admins only", KindChannelMembers, func(b map[string]any) {
			delete(b, "add")
			delete(b, "remove")
			b["admins"] = []any{"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}
		}},
		{"profile name only", KindProfile, func(b map[string]any) {
			for k := range b {
				if k != "name" {
					delete(b, k)
				}
			}
		}},
		{"note without attachments", KindNote, func(b map[string]any) { delete(b, "attachments") }},
		{"order with a GTIN", KindOrder, func(b map[string]any) { set(b, "lines/0/item/gtin", "08801234567893") }},
		// EA has the shape of a Rec 20 code; aliases are mapped to H87 on import, not here.
		{"unit EA", KindOrder, func(b map[string]any) { set(b, "lines/0/quantity/unit", "EA") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := loadBody(t, tt.kind)
			tt.edit(b)
			if err := ValidateBody(tt.kind, b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// set puts v at path in body, creating nothing: the parents must exist.
func set(body map[string]any, path string, v any) {
	at := strings.Split(path, "/")
	var cur any = body
	for _, k := range at[:len(at)-1] {
		cur = step(cur, k)
	}
	last := at[len(at)-1]
	switch c := cur.(type) {
	case map[string]any:
		c[last] = v
	case []any:
		i, _ := strconv.Atoi(last)
		c[i] = v
	}
}

// del removes the field at path.
func del(body map[string]any, path string) {
	at := strings.Split(path, "/")
	var cur any = body
	for _, k := range at[:len(at)-1] {
		cur = step(cur, k)
	}
	delete(cur.(map[string]any), at[len(at)-1])
}

func step(cur any, k string) any {
	switch c := cur.(type) {
	case map[string]any:
		return c[k]
	case []any:
		i, _ := strconv.Atoi(k)
		return c[i]
	}
	panic("no container at " + k)
}

func TestInvalidBodies(t *testing.T) {
	tests := []struct {
		name, kind string
		edit       func(b map[string]any)
		field      string // want Field
		rule       string // want Rule prefix
	}{
		// Missing required fields.
		{"missing docId", KindOrder, func(b map[string]any) { del(b, "docId") }, "", `required: missing "docId"`},
		{"missing docVersion", KindDespatchAdvice, func(b map[string]any) { del(b, "docVersion") }, "", `required: missing "docVersion"`},
		{"missing line quantity", KindOrder, func(b map[string]any) { del(b, "lines/0/quantity") }, "lines/0", `required: missing "quantity"`},
		{"missing quantity unit", KindReceipt, func(b map[string]any) { del(b, "lines/0/quantityReceived/unit") }, "lines/0/quantityReceived", `required: missing "unit"`},
		{"missing party id", KindOrder, func(b map[string]any) { del(b, "seller/id") }, "seller", `required: missing "id"`},
		{"no part number", KindOrder, func(b map[string]any) {
			set(b, "lines/0/item", map[string]any{"description": "부품"})
		}, "lines/0/item", `anyOf: missing one of "buyerPartNo", "supplierPartNo"`},
		{"no lines", KindOrder, func(b map[string]any) { b["lines"] = []any{} }, "lines", "minItems"},
		{"changed without lines", KindOrderResponse, func(b map[string]any) { del(b, "lines") }, "", `required: missing "lines"`},
		{"order-response missing orderRef docId", KindOrderResponse, func(b map[string]any) { del(b, "orderRef/docId") }, "orderRef", `required: missing "docId"`},
		{"order-change without changeSeq", KindOrderChange, func(b map[string]any) { del(b, "changeSeq") }, "", `required: missing "changeSeq"`},
		{"forecast entry without commitment", KindForecast, func(b map[string]any) { del(b, "entries/2/commitment") }, "entries/2", `required: missing "commitment"`},
		{"despatch orderRef without lineId", KindDespatchAdvice, func(b map[string]any) { del(b, "lines/0/orderRef/lineId") }, "lines/0/orderRef", `required: missing "lineId"`},
		{"production-report without lot or serials", KindProductionReport, func(b map[string]any) { del(b, "lotId") }, "", `anyOf: missing one of "lotId", "serials"`},
		{"production-report without completion", KindProductionReport, func(b map[string]any) { del(b, "period") }, "", `anyOf: missing one of "completedAt", "period"`},
		{"production parameter without value", KindProductionReport, func(b map[string]any) { del(b, "processParameters/1/value") }, "processParameters/1", `required: missing "value"`},
		{"inspection without sampleSize", KindQualityInspection, func(b map[string]any) { del(b, "sampleSize") }, "", `required: missing "sampleSize"`},
		{"inventory without site", KindInventory, func(b map[string]any) { del(b, "site") }, "", `required: missing "site"`},
		{"carbon without pcf", KindCarbonFootprint, func(b map[string]any) { del(b, "pcfIncludingBiogenicUptake") }, "", `required: missing "pcfIncludingBiogenicUptake"`},
		{"epcis ObjectEvent without action", KindEPCISEvent, func(b map[string]any) { del(b, "action") }, "", `required: missing "action"`},
		{"epcis without eventTimeZoneOffset", KindEPCISEvent, func(b map[string]any) { del(b, "eventTimeZoneOffset") }, "", `required: missing "eventTimeZoneOffset"`},
		{"note without text", KindNote, func(b map[string]any) { del(b, "text") }, "", `required: missing "text"`},
		{"attachment without cid", KindNote, func(b map[string]any) { del(b, "attachments/0/cid") }, "attachments/0", `required: missing "cid"`},
		{"genesis without admins", KindChannelGenesis, func(b map[string]any) { del(b, "admins") }, "", `required: missing "admins"`},
		{"members change that changes nothing", KindChannelMembers, func(b map[string]any) { del(b, "add"); del(b, "remove") }, "", `anyOf: missing one of "add", "remove", "admins"`},
		{"removal without lastSeq", KindChannelMembers, func(b map[string]any) { del(b, "remove/0/lastSeq") }, "remove/0", `required: missing "lastSeq"`},
		{"profile without name", KindProfile, func(b map[string]any) { del(b, "name") }, "", `required: missing "name"`},

		// Wrong types.
		{"quantity as number", KindOrder, func(b map[string]any) { set(b, "lines/0/quantity/value", 350.5) }, "lines/0/quantity/value", "type: want string, got number"},
		{"docVersion as string", KindOrder, func(b map[string]any) { b["docVersion"] = "1" }, "docVersion", "type: want integer, got string"},
		{"docVersion fractional", KindOrder, func(b map[string]any) { b["docVersion"] = 1.5 }, "docVersion", "type: want integer, got number"},
		{"lineId as number", KindOrder, func(b map[string]any) { set(b, "lines/0/lineId", int64(10)) }, "lines/0/lineId", "type: want string"},
		{"despatchRef as string", KindReceipt, func(b map[string]any) { b["despatchRef"] = "DN-250311-01" }, "despatchRef", "type: want object, got string"},
		{"lines as object", KindOrder, func(b map[string]any) { b["lines"] = map[string]any{} }, "lines", "type: want array, got object"},
		{"flag as string", KindCarbonFootprint, func(b map[string]any) { b["packagingEmissionsIncluded"] = "true" }, "packagingEmissionsIncluded", "type: want boolean"},
		{"null name", KindOrder, func(b map[string]any) { set(b, "buyer/name", nil) }, "buyer/name", "type: want string, got null"},
		{"eventTime as number", KindEPCISEvent, func(b map[string]any) { b["eventTime"] = int64(1741644000) }, "eventTime", "type: want string"},
		{"bytes in a body", KindNote, func(b map[string]any) { b["text"] = []byte("hello") }, "text", "type: bytes"},
		{"link in a body", KindNote, func(b map[string]any) { set(b, "attachments/0/cid", testChannel) }, "attachments/0/cid", "type: links"},
		{"link in an open body", KindEPCISEvent, func(b map[string]any) { b["ext:ref"] = testChannel }, "ext:ref", "type: links"},
		{"NaN", KindEPCISEvent, func(b map[string]any) { set(b, "quantityList/0/quantity", math.NaN()) }, "quantityList/0/quantity", "type: NaN"},
		{"infinity", KindCarbonFootprint, func(b map[string]any) { set(b, "original/x", math.Inf(-1)) }, "original/x", "type: NaN"},
		{"integral float for an integer", KindOrder, func(b map[string]any) { b["docVersion"] = 2.0 }, "docVersion", "type: want integer, got float"},
		{"integral float in a list", KindQualityInspection, func(b map[string]any) { b["sampleSize"] = 32.0 }, "sampleSize", "type: want integer, got float"},
		{"unsupported Go type", KindNote, func(b map[string]any) { b["subject"] = uint8(1) }, "subject", "type: unsupported value type uint8"},

		// Decimals.
		{"decimal with comma", KindOrder, func(b map[string]any) { set(b, "lines/0/quantity/value", "1,200") }, "lines/0/quantity/value", "pattern"},
		{"decimal with exponent", KindOrder, func(b map[string]any) { set(b, "lines/0/unitPrice/amount", "8.35e3") }, "lines/0/unitPrice/amount", "pattern"},
		{"decimal with leading zero", KindInventory, func(b map[string]any) { set(b, "quantity/value", "02350") }, "quantity/value", "pattern"},
		{"decimal trailing dot", KindOrder, func(b map[string]any) { b["lines"].([]any)[0].(map[string]any)["lineAmount"] = "100." }, "lines/0/lineAmount", "pattern"},
		{"negative quantity", KindReceipt, func(b map[string]any) { set(b, "lines/0/quantityRejected/value", "-12") }, "lines/0/quantityRejected/value", "pattern"},
		{"measurement not decimal", KindQualityInspection, func(b map[string]any) { set(b, "characteristics/0/measured/2", "12.05mm") }, "characteristics/0/measured/2", "pattern"},
		{"parameter with unit not decimal", KindProductionReport, func(b map[string]any) { set(b, "processParameters/0/value", "높음") }, "processParameters/0/value", "pattern"},
		{"pcf not decimal", KindCarbonFootprint, func(b map[string]any) { b["pcfExcludingBiogenicUptake"] = "3.41 kg" }, "pcfExcludingBiogenicUptake", "pattern"},

		// Units.
		{"unit lowercase", KindOrder, func(b map[string]any) { set(b, "lines/0/quantity/unit", "kgm") }, "lines/0/quantity/unit", "pattern"},
		{"unit Korean", KindDespatchAdvice, func(b map[string]any) { set(b, "lines/0/quantity/unit", "개") }, "lines/0/quantity/unit", "pattern"},
		{"unit too long", KindForecast, func(b map[string]any) { b["unit"] = "PIECE" }, "unit", "pattern"},

		// Unknown fields.
		{"unknown root field", KindOrder, func(b map[string]any) { b["buyerr"] = "x" }, "buyerr", `additionalProperties: "buyerr" not allowed`},
		{"unknown line field", KindOrder, func(b map[string]any) { set(b, "lines/1/colour", "red") }, "lines/1/colour", `additionalProperties: "colour" not allowed`},
		{"lineAction in an order", KindOrder, func(b map[string]any) { set(b, "lines/0/lineAction", "add") }, "lines/0/lineAction", `properties: "lineAction" not allowed`},
		{"unknown change line field", KindOrderChange, func(b map[string]any) { set(b, "lines/2/qty", "1") }, "lines/2/qty", `additionalProperties: "qty" not allowed`},
		{"unknown party field", KindInventory, func(b map[string]any) { set(b, "owner/brn", "3128600455") }, "owner/brn", "additionalProperties"},
		{"unknown item field", KindReceipt, func(b map[string]any) { set(b, "lines/0/item/partNo", "X") }, "lines/0/item/partNo", "additionalProperties"},
		{"unknown quantity field", KindProductionReport, func(b map[string]any) { set(b, "quantityGood/uom", "H87") }, "quantityGood/uom", "additionalProperties"},
		{"unknown genesis field", KindChannelGenesis, func(b map[string]any) { b["owner"] = "me" }, "owner", "additionalProperties"},
		{"unknown profile contact field", KindProfile, func(b map[string]any) { set(b, "contact/fax", "055-123-4568") }, "contact/fax", "additionalProperties"},
		{"field name with slash", KindNote, func(b map[string]any) { b["a/b~c"] = "x" }, "a~1b~0c", "additionalProperties"},

		// 사업자등록번호.
		{"buyer BRN check digit", KindOrder, func(b map[string]any) { set(b, "buyer/id", "1388101231") }, "buyer/id", "brn: check digit"},
		{"consumed supplier BRN check digit", KindProductionReport, func(b map[string]any) { set(b, "consumed/0/supplier/id", "6098100250") }, "consumed/0/supplier/id", "brn: check digit"},
		{"allocated customer BRN check digit", KindInventory, func(b map[string]any) { set(b, "allocatedTo/customer/id", "1388101239") }, "allocatedTo/customer/id", "brn: check digit"},
		{"inspector BRN check digit", KindQualityInspection, func(b map[string]any) { set(b, "inspector/id", "3128600454") }, "inspector/id", "brn: check digit"},
		{"profile BRN check digit", KindProfile, func(b map[string]any) { b["brn"] = "3128600456" }, "brn", "brn: check digit"},
		{"BRN with dashes", KindOrder, func(b map[string]any) { set(b, "seller/id", "312-86-00455") }, "seller/id", "pattern"},
		{"BRN too short", KindProfile, func(b map[string]any) { b["brn"] = "312860045" }, "brn", "pattern"},
		{"bad bpnl", KindInventory, func(b map[string]any) { set(b, "owner/id", "BPNL123") }, "owner/id", "pattern"},
		{"bad bpns", KindInventory, func(b map[string]any) { set(b, "site/id", "CHANGWON") }, "site/id", "pattern"},
		{"bad gln", KindOrder, func(b map[string]any) { set(b, "buyer", map[string]any{"scheme": "gln", "id": "880123"}) }, "buyer/id", "pattern"},
		{"bad party scheme", KindOrder, func(b map[string]any) { set(b, "buyer/scheme", "brn") }, "buyer/scheme", "enum"},
		{"bad peer party", KindOrder, func(b map[string]any) { set(b, "buyer", map[string]any{"scheme": "peer", "id": "12D3KooW0OIl"}) }, "buyer/id", "pattern"},

		// Times and dates.
		{"date-time with space", KindOrder, func(b map[string]any) { b["issuedAt"] = "2025-03-04 09:30:00+09:00" }, "issuedAt", ""},
		{"date-time without offset", KindOrder, func(b map[string]any) { b["issuedAt"] = "2025-03-04T09:30:00" }, "issuedAt", ""},
		{"date-time lowercase", KindDespatchAdvice, func(b map[string]any) { b["despatchedAt"] = "2025-03-11t07:00:00z" }, "despatchedAt", "pattern"},
		{"date-time impossible day", KindReceipt, func(b map[string]any) { b["receivedAt"] = "2025-02-30T09:42:00+09:00" }, "receivedAt", "format"},
		{"date-time hour 24", KindInventory, func(b map[string]any) { b["asOf"] = "2025-03-11T24:00:00+09:00" }, "asOf", "format"},
		{"date as date-time", KindOrder, func(b map[string]any) { set(b, "lines/0/requestedDelivery/date", "2025-03-11T00:00:00+09:00") }, "lines/0/requestedDelivery/date", "format"},
		{"date Korean style", KindForecast, func(b map[string]any) { set(b, "entries/0/periodStart", "2025.03.03") }, "entries/0/periodStart", ""},
		{"date impossible", KindForecast, func(b map[string]any) { b["horizonEnd"] = "2025-04-31" }, "horizonEnd", "format"},
		{"epcis bad eventTime", KindEPCISEvent, func(b map[string]any) { b["eventTime"] = "yesterday" }, "eventTime", "format"},
		{"epcis bad offset", KindEPCISEvent, func(b map[string]any) { b["eventTimeZoneOffset"] = "+9" }, "eventTimeZoneOffset", "pattern"},
		{"delivery date and window", KindOrder, func(b map[string]any) { set(b, "lines/1/requestedDelivery/date", "2025-03-12") }, "lines/1/requestedDelivery", "oneOf"},
		{"delivery window without end", KindOrder, func(b map[string]any) { del(b, "lines/1/requestedDelivery/end") }, "lines/1/requestedDelivery", "oneOf"},
		{"delivery window backwards", KindOrder, func(b map[string]any) {
			set(b, "lines/1/requestedDelivery/end", "2025-03-12T07:00:00+09:00")
		}, "lines/1/requestedDelivery/end", "span"},
		{"delivery window backwards across zones", KindOrderChange, func(b map[string]any) {
			set(b, "lines/1/requestedDelivery/end", "2025-03-11T22:59:00Z")
		}, "lines/1/requestedDelivery/end", "span"},
		{"forecast period backwards", KindForecast, func(b map[string]any) { set(b, "entries/1/periodEnd", "2025-03-09") }, "entries/1/periodEnd", "span"},
		{"production period backwards", KindProductionReport, func(b map[string]any) { set(b, "period/end", "2025-03-10T07:59:59+09:00") }, "period/end", "span"},
		{"carbon reference period backwards", KindCarbonFootprint, func(b map[string]any) { b["referencePeriodEnd"] = "2023-12-31T00:00:00+09:00" }, "referencePeriodEnd", "span"},

		// Enumerations, ranges and other shapes.
		{"bad responseCode", KindOrderResponse, func(b map[string]any) { b["responseCode"] = "AP" }, "responseCode", "enum"},
		{"bad lineStatus", KindOrderResponse, func(b map[string]any) { set(b, "lines/1/lineStatus", "partial") }, "lines/1/lineStatus", "enum"},
		{"bad lineAction", KindOrderChange, func(b map[string]any) { set(b, "lines/0/lineAction", "delete") }, "lines/0/lineAction", "enum"},
		{"bad status", KindOrderChange, func(b map[string]any) { b["status"] = "canceled" }, "status", "enum"},
		{"bad orderType", KindOrder, func(b map[string]any) { b["orderType"] = "blanket" }, "orderType", "enum"},
		{"bad incoterm", KindOrder, func(b map[string]any) { b["incoterm"] = "dap" }, "incoterm", "enum"},
		{"bad currency", KindOrder, func(b map[string]any) { b["currency"] = "원" }, "currency", "pattern"},
		{"bad commitment", KindForecast, func(b map[string]any) { set(b, "entries/0/commitment", "forecast") }, "entries/0/commitment", "enum"},
		{"bad inspectionType", KindQualityInspection, func(b map[string]any) { b["inspectionType"] = "in-process" }, "inspectionType", "enum"},
		{"bad inspection result", KindQualityInspection, func(b map[string]any) { b["result"] = "OK" }, "result", "enum"},
		{"negative sampleSize", KindQualityInspection, func(b map[string]any) { b["sampleSize"] = int64(-1) }, "sampleSize", "minimum"},
		{"bad certificate digest", KindQualityInspection, func(b map[string]any) { set(b, "certificate/sha256", "9F86D081") }, "certificate/sha256", "pattern"},
		{"file name with directory", KindQualityInspection, func(b map[string]any) { set(b, "certificate/fileName", "../../etc/passwd") }, "certificate/fileName", "pattern"},
		{"bad stockStatus", KindInventory, func(b map[string]any) { b["stockStatus"] = "on_hold" }, "stockStatus", "enum"},
		{"empty allocatedTo", KindInventory, func(b map[string]any) { b["allocatedTo"] = map[string]any{} }, "allocatedTo", "minProperties"},
		{"docVersion zero", KindOrder, func(b map[string]any) { b["docVersion"] = int64(0) }, "docVersion", "minimum"},
		{"order-change version 1", KindOrderChange, func(b map[string]any) { b["docVersion"] = int64(1) }, "docVersion", "minimum"},
		{"empty docId", KindOrder, func(b map[string]any) { b["docId"] = "" }, "docId", ""},
		{"docId with trailing space", KindOrder, func(b map[string]any) { b["docId"] = "PO-1 " }, "docId", "pattern"},
		{"docId with newline", KindReceipt, func(b map[string]any) { b["docId"] = "GR\n1" }, "docId", "pattern"},
		{"docId too long", KindOrder, func(b map[string]any) { b["docId"] = strings.Repeat("가", 65) }, "docId", "maxLength"},
		{"package count zero", KindDespatchAdvice, func(b map[string]any) { set(b, "packages/0/count", int64(0)) }, "packages/0/count", "minimum"},
		{"bad gtin", KindOrder, func(b map[string]any) { set(b, "lines/0/item/gtin", "8801") }, "lines/0/item/gtin", "pattern"},
		{"carbon bad pfId", KindCarbonFootprint, func(b map[string]any) { b["pfId"] = "3893bb5d-da16-4dc1-9185" }, "pfId", "format"},
		{"carbon bad status", KindCarbonFootprint, func(b map[string]any) { b["status"] = "active" }, "status", "enum"},
		{"carbon no company IDs", KindCarbonFootprint, func(b map[string]any) { b["companyIds"] = []any{} }, "companyIds", "minItems"},
		{"carbon original not an object", KindCarbonFootprint, func(b map[string]any) { b["original"] = "{}" }, "original", "type"},
		{"carbon bad DQR", KindCarbonFootprint, func(b map[string]any) { set(b, "dataQualityRating/temporalDQR", 2.0) }, "dataQualityRating/temporalDQR", "type"},
		{"epcis bad type", KindEPCISEvent, func(b map[string]any) { b["type"] = "EPCISDocument" }, "type", "enum"},
		{"epcis bad action", KindEPCISEvent, func(b map[string]any) { b["action"] = "observe" }, "action", "enum"},
		{"note text too long", KindNote, func(b map[string]any) { b["text"] = strings.Repeat("가", 65537) }, "text", "maxLength"},
		{"note bad cid", KindNote, func(b map[string]any) { set(b, "attachments/0/cid", "not-a-cid") }, "attachments/0/cid", "pattern"},
		{"note negative size", KindNote, func(b map[string]any) { set(b, "attachments/0/size", int64(-1)) }, "attachments/0/size", "minimum"},
		{"genesis empty admins", KindChannelGenesis, func(b map[string]any) { b["admins"] = []any{} }, "admins", "minItems"},
		{"genesis bad member", KindChannelGenesis, func(b map[string]any) { set(b, "members/1", "12D3KooW-bad") }, "members/1", "pattern"},
		{"genesis duplicate member", KindChannelGenesis, func(b map[string]any) {
			b["members"] = append(b["members"].([]any), b["members"].([]any)[0])
		}, "members", "uniqueItems"},
		{"genesis name too long", KindChannelGenesis, func(b map[string]any) { b["name"] = strings.Repeat("채", 101) }, "name", "maxLength"},
		{"members negative lastSeq", KindChannelMembers, func(b map[string]any) { set(b, "remove/0/lastSeq", int64(-1)) }, "remove/0/lastSeq", "minimum"},
		{"members empty admins", KindChannelMembers, func(b map[string]any) { b["admins"] = []any{} }, "admins", "minItems"},
		{"profile bad email", KindProfile, func(b map[string]any) { set(b, "contact/email", "scm at daesung") }, "contact/email", "format"},
		{"profile bad phone", KindProfile, func(b map[string]any) { set(b, "contact/phone", "call me") }, "contact/phone", "pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := loadBody(t, tt.kind)
			tt.edit(b)
			err := ValidateBody(tt.kind, b)
			if err == nil {
				t.Fatal("ValidateBody passed, want an error")
			}
			t.Log(err)
			var be *BodyError
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T) is not a *BodyError", err, err)
			}
			if !errors.Is(err, ErrInvalidBody) {
				t.Errorf("errors.Is(%v, ErrInvalidBody) = false", err)
			}
			if be.Kind != tt.kind {
				t.Errorf("Kind = %q, want %q", be.Kind, tt.kind)
			}
			if be.Field != tt.field {
				t.Errorf("Field = %q, want %q (error: %v; causes %v)", be.Field, tt.field, err, be.Causes)
			}
			if !strings.HasPrefix(be.Rule, tt.rule) {
				t.Errorf("Rule = %q, want prefix %q (error: %v)", be.Rule, tt.rule, err)
			}
			if be.Message == "" || len(be.Causes) == 0 || be.Causes[0].Field != be.Field || be.Causes[0].Rule != be.Rule {
				t.Errorf("inconsistent error %#v", be)
			}
			if !strings.HasPrefix(err.Error(), tt.kind+" body: ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestBodyErrorText(t *testing.T) {
	b := loadBody(t, KindOrder)
	set(b, "lines/0/quantity/value", 350.5)
	err := ValidateBody(KindOrder, b)
	want := `order body: lines/0/quantity/value: must be a decimal string like "350.5"`
	if err == nil || err.Error() != want {
		t.Errorf("Error() = %v, want %s", err, want)
	}

	b = loadBody(t, KindOrder)
	del(b, "docId")
	err = ValidateBody(KindOrder, b)
	want = `order body: missing required field "docId"`
	if err == nil || err.Error() != want {
		t.Errorf("Error() = %v, want %s", err, want)
	}

	b = loadBody(t, KindOrder)
	set(b, "buyer/id", "1388101231")
	err = ValidateBody(KindOrder, b)
	want = `order body: buyer/id: is not a valid 사업자등록번호: the check digit does not match`
	if err == nil || err.Error() != want {
		t.Errorf("Error() = %v, want %s", err, want)
	}
}

func TestBodyErrorCauses(t *testing.T) {
	b := loadBody(t, KindOrder)
	del(b, "docId")
	b["currency"] = "won"
	set(b, "lines/1/quantity/unit", "kg")
	set(b, "lines/0/quantity/value", "-1")
	err := ValidateBody(KindOrder, b)
	var be *BodyError
	if !errors.As(err, &be) {
		t.Fatalf("error %v is not a *BodyError", err)
	}
	var fields []string
	for _, c := range be.Causes {
		fields = append(fields, c.Field)
	}
	// Deepest first, then by path.
	want := []string{"lines/0/quantity/value", "lines/1/quantity/unit", "currency", ""}
	if !slices.Equal(fields, want) {
		t.Errorf("cause fields = %q, want %q", fields, want)
	}
	if be.Message != "must not be negative" {
		t.Errorf("Message = %q", be.Message)
	}
	if !strings.HasSuffix(err.Error(), "(and 3 more problems)") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestUnknownKind(t *testing.T) {
	for _, kind := range []string{"", "invoice", "defs", "Order"} {
		err := ValidateBody(kind, map[string]any{})
		if !errors.Is(err, ErrUnknownKind) {
			t.Errorf("ValidateBody(%q) = %v, want ErrUnknownKind", kind, err)
		}
		if errors.Is(err, ErrInvalidBody) {
			t.Errorf("ValidateBody(%q) = %v matches ErrInvalidBody", kind, err)
		}
		if kind != "" && !strings.Contains(err.Error(), kind) {
			t.Errorf("error %q does not name the kind", err)
		}
	}
}

func TestValidateBodyOddInput(t *testing.T) {
	// A nil body is an empty one.
	err := ValidateBody(KindNote, nil)
	var be *BodyError
	if !errors.As(err, &be) || be.Rule != `required: missing "text"` {
		t.Errorf("nil body: %v", err)
	}
	// Nesting far beyond MaxDepth is refused without recursing through it all.
	deep := map[string]any{}
	cur := deep
	for range 10 * MaxDepth {
		next := map[string]any{}
		cur["x"] = next
		cur = next
	}
	body := loadBody(t, KindEPCISEvent)
	body["ext:deep"] = deep
	if err := ValidateBody(KindEPCISEvent, body); !errors.As(err, &be) || be.Rule != "depth" {
		t.Errorf("deep body: %v", err)
	}
	// A body that refers to itself is refused too.
	loop := map[string]any{}
	loop["self"] = loop
	body = loadBody(t, KindEPCISEvent)
	body["ext:loop"] = loop
	if err := ValidateBody(KindEPCISEvent, body); !errors.As(err, &be) || be.Rule != "depth" {
		t.Errorf("self-referencing body: %v", err)
	}
	// Long strings that almost match cost linear time, not exponential.
	body = loadBody(t, KindOrder)
	body["docId"] = strings.Repeat("가 ", MaxRecordSize/4) + " "
	set(body, "lines/0/quantity/value", strings.Repeat("1", MaxRecordSize/2)+".")
	set(body, "lines/0/item/buyerPartNo", "x"+strings.Repeat("\t", MaxRecordSize/4))
	if err := ValidateBody(KindOrder, body); !errors.As(err, &be) {
		t.Errorf("long strings: %v", err)
	}
	// Validation does not modify the body.
	body = loadBody(t, KindOrder)
	body["docVersion"] = 1
	before, _ := json.Marshal(body)
	if err := ValidateBody(KindOrder, body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body["docVersion"].(int); !ok {
		t.Error("ValidateBody changed an int in the body")
	}
	after, _ := json.Marshal(body)
	if !bytes.Equal(before, after) {
		t.Error("ValidateBody changed the body")
	}
}

func TestValidateBodyConcurrent(t *testing.T) {
	bodies := map[string]map[string]any{}
	for _, kind := range Kinds() {
		bodies[kind] = loadBody(t, kind)
	}
	bad := loadBody(t, KindOrder)
	set(bad, "buyer/id", "1388101231")
	done := make(chan error)
	for range 8 {
		go func() {
			for range 20 {
				for kind, b := range bodies {
					if err := ValidateBody(kind, b); err != nil {
						done <- err
						return
					}
				}
				if err := ValidateBody(KindOrder, bad); !errors.Is(err, ErrInvalidBody) {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestGS1Examples checks that the events in GS1's examples pass the
// epcis-event schema and those with a missing offset or action do not. The
// files are GS1's: they are read from ../shared, never copied here.
func TestGS1Examples(t *testing.T) {
	dir := gs1test.Dir(t)
	events := func(t *testing.T, file string) []map[string]any {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := decodeBody(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var out []map[string]any
		for _, e := range doc["epcisBody"].(map[string]any)["eventList"].([]any) {
			out = append(out, e.(map[string]any))
		}
		return out
	}
	examples, _ := filepath.Glob(filepath.Join(dir, "examples", "*.jsonld"))
	if len(examples) == 0 {
		t.Fatal("no GS1 examples")
	}
	for _, f := range examples {
		for i, e := range events(t, f) {
			if err := ValidateBody(KindEPCISEvent, e); err != nil {
				t.Errorf("%s event %d: %v", filepath.Base(f), i, err)
			}
		}
	}
	for _, f := range []string{"bad_no_tz.json", "bad_noaction.json", "bad_bizstep.json", "bad_uom.json"} {
		for i, e := range events(t, filepath.Join(dir, "invalid", f)) {
			if err := ValidateBody(KindEPCISEvent, e); !errors.Is(err, ErrInvalidBody) {
				t.Errorf("%s event %d: %v, want ErrInvalidBody", f, i, err)
			}
		}
	}
}

// FuzzValidateBody feeds arbitrary JSON bodies to every kind: no panic, and
// any error is a *BodyError.
func FuzzValidateBody(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bodies", "*.json"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"lines":[{"item":{}}],"buyer":{"scheme":"kr-brn","id":"0000000001"}}`))
	kinds := Kinds()
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := decodeBody(data)
		if err != nil {
			return
		}
		for _, kind := range kinds {
			err := ValidateBody(kind, body)
			var be *BodyError
			if err != nil && (!errors.As(err, &be) || be.Message == "" || len(be.Causes) == 0) {
				t.Fatalf("%s: %v (%T)", kind, err, err)
			}
		}
	})
}

func BenchmarkValidateBody(b *testing.B) {
	body := loadBody(b, KindOrder)
	if err := ValidateBody(KindOrder, body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateBody(KindOrder, body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCBVListsAreGS1s: the bizStep and disposition short names the
// epcis-event kind takes are exactly those of GS1's EPCIS 2.0 JSON Schema.
func TestCBVListsAreGS1s(t *testing.T) {
	dir := gs1test.Dir(t)
	var ours struct {
		Defs map[string]struct {
			AnyOf []struct {
				Enum []string `json:"enum"`
			} `json:"anyOf"`
		} `json:"$defs"`
	}
	raw, _ := Schema(KindEPCISEvent)
	if err := json.Unmarshal(raw, &ours); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bizStep", "disposition"} {
		b, err := os.ReadFile(filepath.Join(dir, "JSON-Schema", "schemas", name+"-JSON-Schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		var gs1 struct {
			Definitions map[string]struct {
				AnyOf []struct {
					Enum []string `json:"enum"`
				} `json:"anyOf"`
			} `json:"definitions"`
		}
		if err := json.Unmarshal(b, &gs1); err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for _, a := range gs1.Definitions[name].AnyOf {
			want = append(want, a.Enum...)
		}
		for _, a := range ours.Defs[name].AnyOf {
			got = append(got, a.Enum...)
		}
		slices.Sort(want)
		slices.Sort(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: ours %v, GS1's %v", name, got, want)
		}
	}
}

// TestDisclosure: a disclosure carries a signed record unchanged; a
// changed byte, a wrong cid, a record whose terms forbid it, or a
// channel's governance are refused, saying why.
func TestDisclosure(t *testing.T) {
	body := loadBody(t, KindDisclosure)
	if err := ValidateBody(KindDisclosure, body); err != nil {
		t.Fatal(err)
	}
	orig, err := Disclosed(body)
	if err != nil || orig.Record.Kind != KindQualityInspection {
		t.Fatalf("the original: %v %v", orig, err)
	}
	tampered := maps.Clone(body)
	o := []byte(body["original"].(string))
	o[len(o)/2] ^= 1
	tampered["original"] = string(o)
	wrongCID := maps.Clone(body)
	wrongCID["cid"] = Sum([]byte("another")).String()
	k, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(k)
	seal := func(kind string, b map[string]any) map[string]any {
		s, err := Seal(&Record{Channel: Sum([]byte("c")), Author: id, Seq: 1, Time: 1, Kind: kind, Body: b}, k)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"cid": s.CID.String(), "original": base64.RawURLEncoding.EncodeToString(s.Envelope)}
	}
	forbidden := seal(KindNote, map[string]any{"text": "for you only", "terms": map[string]any{"disclose": false}})
	gov := seal(KindChannelMembers, map[string]any{"add": []any{id.String()}})
	for name, c := range map[string]struct {
		body map[string]any
		want string
	}{
		"tampered":   {tampered, "does not verify"},
		"wrong cid":  {wrongCID, "not " + wrongCID["cid"].(string)},
		"forbidden":  {forbidden, "forbids disclosing"},
		"governance": {gov, "not disclosed"},
	} {
		err := ValidateBody(KindDisclosure, c.body)
		if !errors.Is(err, ErrInvalidBody) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestLinkRules: each kind's links go where their rel says.
func TestLinkRules(t *testing.T) {
	k, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(k)
	other := peer.ID("someone else")
	rec := func(kind string, author peer.ID) *Signed {
		return &Signed{CID: Sum([]byte(kind + string(author))), Record: &Record{Kind: kind, Author: author}}
	}
	for _, c := range []struct {
		from, rel string
		author    peer.ID
		target    *Signed
		want      string // "" when allowed
	}{
		{KindDespatchAdvice, "fulfils", id, rec(KindOrder, other), ""},
		{KindDespatchAdvice, "fulfils", id, rec(KindReceipt, other), "fulfils of a despatch-advice must point to order or order-change"},
		{KindDespatchAdvice, "cites", id, rec(KindOrder, other), `a despatch-advice takes links fulfils, ships, supersedes, not "cites"`},
		{KindReceipt, "receives", id, rec(KindDespatchAdvice, other), ""},
		{KindOrderChange, RelSupersedes, id, rec(KindOrder, id), ""},
		{KindOrderChange, RelSupersedes, id, rec(KindOrder, other), "its own author published"},
		{KindNote, "anything", id, rec(KindReceipt, other), ""},
		{KindDisclosure, "discloses", id, rec(KindQualityInspection, other), ""},
	} {
		err := CheckLinkTarget(&Record{Kind: c.from, Author: c.author}, c.rel, c.target)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %s → %s: %v", c.from, c.rel, c.target.Record.Kind, err)
		case c.want != "" && (!errors.Is(err, ErrBadLink) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %s → %s: %v, want %q", c.from, c.rel, c.target.Record.Kind, err, c.want)
		}
	}
}
