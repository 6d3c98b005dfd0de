package interchange

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// GS1's EPCIS 2.0 JSON-LD context, named, never fetched.
const epcisContext = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"

// sangsaengNS is the prefix of this project's extension fields in
// exported events ("sangsaeng:record", the CID of the signed record the
// event was made from).
const sangsaengNS = "https://sangsaeng.dev/epcis/"

// EPCISRecord is what an export needs of a record.
type EPCISRecord struct {
	CID  cid.Cid
	Kind string
	Body map[string]any
	// Orders are the order numbers a receipt's despatch-advice fulfils,
	// which the receipt itself does not name: the caller finds them.
	Orders []string
}

// EPCISKinds are the kinds that map to events: what moves, is made, is
// checked or is counted. Orders, responses, forecasts and carbon records
// are not events; events refer to them by their bizTransaction URIs.
var EPCISKinds = []string{"despatch-advice", "receipt", "production-report", "quality-inspection", "inventory"}

// ids makes the HTTP identifiers of CBV chapter 8 under a base the
// operator configures (https://id.example.co.kr): /class/<part>[/lot/<lot>],
// /loc/<site>, /pty/<company>, /bt/<kind>/<document>.
type ids struct{ base string }

func (i ids) seg(s string) string { return url.PathEscape(s) }

func (i ids) class(item any, lot string) string {
	m, _ := item.(map[string]any)
	part, _ := m["supplierPartNo"].(string)
	if part == "" {
		part, _ = m["buyerPartNo"].(string)
	}
	if part == "" {
		part, _ = m["gtin"].(string)
	}
	u := i.base + "/class/" + i.seg(part)
	if lot != "" {
		u += "/lot/" + i.seg(lot)
	}
	return u
}

func (i ids) party(p any) string {
	m, _ := p.(map[string]any)
	id, _ := m["id"].(string)
	scheme, _ := m["scheme"].(string)
	if scheme != "kr-brn" {
		id = scheme + "-" + id
	}
	return i.base + "/pty/" + i.seg(id)
}

func (i ids) loc(l any) string {
	m, _ := l.(map[string]any)
	id, _ := m["id"].(string)
	return i.base + "/loc/" + i.seg(id)
}

func (i ids) bt(kind, doc string) string { return i.base + "/bt/" + kind + "/" + i.seg(doc) }

// EPCISEvent maps a record of one of EPCISKinds to an EPCIS 2.0 event, as
// docs/design.md, "Interchange", lays out; ok is false for other kinds.
// base is the root of the identifiers (see ids).
func EPCISEvent(r EPCISRecord, base string) (ev map[string]any, ok bool, err error) {
	in := ids{strings.TrimRight(base, "/")}
	b := r.Body
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	qty := func(class string, q any) map[string]any {
		m, _ := q.(map[string]any)
		out := map[string]any{"epcClass": class}
		if v := str(m, "value"); v != "" {
			out["quantity"] = json.Number(v)
		}
		if u := str(m, "unit"); u != "" {
			out["uom"] = u
		}
		return out
	}
	bts := func(pairs ...string) []any {
		var out []any
		for i := 0; i+1 < len(pairs); i += 2 {
			if pairs[i+1] != "" {
				out = append(out, map[string]any{"type": pairs[i], "bizTransaction": pairs[i+1]})
			}
		}
		return out
	}
	ev = map[string]any{"type": "ObjectEvent", "action": "OBSERVE"}
	var when string
	switch r.Kind {
	case "despatch-advice":
		when = str(b, "despatchedAt")
		ev["bizStep"], ev["disposition"] = "shipping", "in_transit"
		var ql, bt []any
		orders := map[string]bool{}
		for _, l := range asList(b["lines"]) {
			lots, _ := l["lotIds"].([]any)
			if len(lots) == 0 {
				ql = append(ql, qty(in.class(l["item"], ""), l["quantity"]))
			}
			for _, lot := range lots {
				// The quantity is the line's: a line with several lots
				// says no more, so each lot is listed with it once.
				q := qty(in.class(l["item"], lot.(string)), l["quantity"])
				if len(lots) > 1 {
					delete(q, "quantity")
					delete(q, "uom")
				}
				ql = append(ql, q)
			}
			if ref, ok := l["orderRef"].(map[string]any); ok {
				if id := str(ref, "docId"); id != "" && !orders[id] {
					orders[id] = true
					bt = append(bt, bts("po", in.bt("order", id))...)
				}
			}
		}
		bt = append(bt, bts("desadv", in.bt("despatch-advice", str(b, "docId")))...)
		ev["quantityList"], ev["bizTransactionList"] = ql, bt
		ev["sourceList"] = []any{map[string]any{"type": "owning_party", "source": in.party(b["seller"])}}
		ev["destinationList"] = []any{map[string]any{"type": "owning_party", "destination": in.party(b["buyer"])}}
		if st, ok := b["shipTo"]; ok {
			ev["destinationList"] = append(ev["destinationList"].([]any), map[string]any{"type": "location", "destination": in.loc(st)})
		}
	case "receipt":
		when = str(b, "receivedAt")
		ev["bizStep"], ev["disposition"] = "receiving", "in_progress"
		var ql []any
		for _, l := range asList(b["lines"]) {
			ql = append(ql, qty(in.class(l["item"], ""), l["quantityReceived"]))
		}
		ref, _ := b["despatchRef"].(map[string]any)
		ev["quantityList"] = ql
		var bt []any
		for _, o := range r.Orders {
			bt = append(bt, bts("po", in.bt("order", o))...)
		}
		ev["bizTransactionList"] = append(bt, bts("desadv", in.bt("despatch-advice", str(ref, "docId")), "recadv", in.bt("receipt", str(b, "docId")))...)
		ev["sourceList"] = []any{map[string]any{"type": "owning_party", "source": in.party(b["seller"])}}
		ev["destinationList"] = []any{map[string]any{"type": "owning_party", "destination": in.party(b["buyer"])}}
	case "production-report":
		when = str(b, "completedAt")
		if when == "" {
			if p, ok := b["period"].(map[string]any); ok {
				when = str(p, "end")
			}
		}
		out := qty(in.class(b["item"], str(b, "lotId")), b["quantityGood"])
		var inputs []any
		for _, c := range asList(b["consumed"]) {
			inputs = append(inputs, qty(in.class(c["item"], str(c, "lotId")), c["quantity"]))
		}
		if len(inputs) > 0 {
			ev = map[string]any{"type": "TransformationEvent", "inputQuantityList": inputs, "outputQuantityList": []any{out}}
		} else {
			ev["action"], ev["quantityList"] = "ADD", []any{out}
		}
		ev["bizStep"], ev["disposition"] = "commissioning", "active"
		if wo := str(b, "workOrderId"); wo != "" {
			ev["bizTransactionList"] = bts("prodorder", in.bt("work-order", wo))
		}
		if lot := str(b, "lotId"); lot != "" {
			ev["ilmd"] = map[string]any{"cbvmda:lotNumber": lot}
		}
		ev["bizLocation"] = map[string]any{"id": in.loc(b["site"])}
	case "quality-inspection":
		when = str(b, "inspectedAt")
		ev["bizStep"] = "inspecting"
		ev["disposition"] = map[string]string{"pass": "conformant", "fail": "non_conformant", "conditional": "conformant"}[str(b, "result")]
		ev["quantityList"] = []any{map[string]any{"epcClass": in.class(b["item"], str(b, "lotId"))}}
		ev["bizTransactionList"] = bts("testres", in.bt("quality-inspection", str(b, "docId")))
		var reports []any
		for _, c := range asList(b["characteristics"]) {
			ms, _ := c["measured"].([]any)
			for _, m := range ms {
				rep := map[string]any{"type": in.base + "/char/" + in.seg(str(c, "name")), "value": json.Number(fmt.Sprint(m))}
				if u := str(c, "unit"); u != "" {
					rep["uom"] = u
				}
				reports = append(reports, rep)
			}
		}
		if len(reports) > 0 {
			ev["sensorElementList"] = []any{map[string]any{"sensorReport": reports}}
		}
	case "inventory":
		when = str(b, "asOf")
		ev["bizStep"] = "stock_taking"
		ev["disposition"] = map[string]string{"available": "available", "blocked": "unavailable", "quality_hold": "unavailable", "in_transit": "in_transit"}[str(b, "stockStatus")]
		ev["quantityList"] = []any{qty(in.class(b["item"], str(b, "lotId")), b["quantity"])}
		ev["bizLocation"] = map[string]any{"id": in.loc(b["site"])}
	default:
		return nil, false, nil
	}
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		return nil, false, fmt.Errorf("%s %s: no time for the event (%q)", r.Kind, r.CID, when)
	}
	ev["eventTime"] = t.Format(time.RFC3339)
	ev["eventTimeZoneOffset"] = t.Format("-07:00")
	ev["eventID"] = niURI(r.CID)
	ev["sangsaeng:record"] = r.CID.String()
	return ev, true, nil
}

// niURI names a record by its hash, as RFC 6920 does and GS1's own event
// IDs are written: ni:///sha-256;<digest, base64url>.
func niURI(c cid.Cid) string {
	dm, err := multihash.Decode(c.Hash())
	if err != nil || dm.Code != multihash.SHA2_256 {
		return "urn:sangsaeng:record:" + c.String()
	}
	return "ni:///sha-256;" + base64.RawURLEncoding.EncodeToString(dm.Digest)
}

// EPCISWriter writes an EPCIS 2.0 document as a stream of events.
type EPCISWriter struct {
	w     io.Writer
	n     int
	first bool
}

// NewEPCISWriter starts a document on w, created at now.
func NewEPCISWriter(w io.Writer, now time.Time) (*EPCISWriter, error) {
	head := map[string]any{
		"@context":      []any{epcisContext, map[string]any{"sangsaeng": sangsaengNS}},
		"type":          "EPCISDocument",
		"schemaVersion": "2.0",
		"creationDate":  now.Format(time.RFC3339),
	}
	b, err := json.Marshal(head)
	if err != nil {
		return nil, err
	}
	// The head without its closing brace, then the body.
	if _, err := w.Write(append(b[:len(b)-1], []byte(`,"epcisBody":{"eventList":[`)...)); err != nil {
		return nil, err
	}
	return &EPCISWriter{w: w}, nil
}

// Write adds an event.
func (e *EPCISWriter) Write(ev map[string]any) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if e.n > 0 {
		b = append([]byte{',', '\n'}, b...)
	} else {
		b = append([]byte{'\n'}, b...)
	}
	e.n++
	_, err = e.w.Write(b)
	return err
}

// Close ends the document.
func (e *EPCISWriter) Close() error {
	_, err := io.WriteString(e.w, "\n]}}\n")
	return err
}
