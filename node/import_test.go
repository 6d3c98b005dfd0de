package node

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"golang.org/x/text/encoding/korean"

	"github.com/sangsaeng/sangsaeng/evidence"
	"github.com/sangsaeng/sangsaeng/internal/gs1test"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// cp949CSV writes rows as Korean Excel saves "CSV (쉼표로 분리)": CP949,
// CRLF, no BOM.
func cp949CSV(t testing.TB, rows [][]string) []byte {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, ","))
		b.WriteString("\r\n")
	}
	out, err := korean.EUCKR.NewEncoder().Bytes([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kindsHeld counts the records of kind that n holds in ch, by docId and
// version.
func docsHeld(t *testing.T, n *Node, ch cid.Cid, kind string) map[string][]*protocol.Signed {
	t.Helper()
	out := map[string][]*protocol.Signed{}
	cursor := ""
	for {
		page, next, err := n.store.ByChannel(ch, 1000, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			if s.Record.Kind == kind {
				id, _ := s.Record.Body["docId"].(string)
				out[id] = append(out[id], s)
			}
		}
		if next == "" {
			return out
		}
		cursor = next
	}
}

// TestImportCSVReachesPartner: A imports a CP949 order file with Korean
// headers through the API, then a despatch-advice file; B, its partner,
// receives every document. The same file again publishes nothing; a
// changed line publishes the next version, linked supersedes; a file with
// one bad cell publishes nothing and names its row and column.
func TestImportCSVReachesPartner(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "orders")
	h := newAPIHarness(t, a)
	c := api.NewClient(h.srv.URL, h.token)
	ctx := t.Context()
	orders := [][]string{
		{"발주번호", "발주일자", "공급사사업자번호", "공급사", "항번", "고객품번", "품명", "수량", "단위", "납기일자"},
		{"PO-1", "2026.11.20", "312-86-00455", "대성정밀", "1", "00123", "브래킷", "\"1,200\"", "EA", "20261127"},
		{"PO-1", "2026.11.20", "312-86-00455", "대성정밀", "2", "86511-2S000", "하우징", "350", "EA", "2026-11-30"},
		{"PO-2", "2026.11.21", "312-86-00455", "대성정밀", "1", "00123", "브래킷", "40", "개", "2026-12-01"},
	}
	imp := func(rows [][]string, kind, file string, dry bool) *api.ImportReport {
		t.Helper()
		var progressed int
		rep, err := c.Import(ctx, "orders", bytes.NewReader(cp949CSV(t, rows)), api.ImportOptions{Kind: kind, Format: "csv", File: file, DryRun: dry},
			func(api.ImportProgress) { progressed++ })
		if err != nil {
			t.Fatalf("import %s: %v", file, err)
		}
		if progressed == 0 && rep.ErrorCount == 0 && !dry {
			t.Errorf("import %s: no progress reported", file)
		}
		return rep
	}

	// A dry run publishes nothing and says what would be.
	rep := imp(orders, "order", "발주.csv", true)
	if rep.ErrorCount != 0 || rep.Published != 2 || len(rep.Records) != 2 || rep.Encoding != "cp949" || len(docsHeld(t, a, ch, "order")) != 0 {
		t.Fatalf("dry run: %+v", rep)
	}

	rep = imp(orders, "order", "발주.csv", false)
	if rep.ErrorCount != 0 || rep.Documents != 2 || rep.Lines != 3 || rep.Published != 2 {
		t.Fatalf("import: %+v", rep)
	}
	despatch := [][]string{
		{"납품서번호", "출하일시", "고객사사업자번호", "항번", "발주번호", "발주항번", "고객품번", "수량", "단위", "LOT번호"},
		{"DN-1", "2026-11-25 14:30", "1388101230", "1", "PO-1", "1", "00123", "600", "EA", "L-2611-01"},
		{"DN-1", "2026-11-25 14:30", "1388101230", "2", "PO-1", "2", "86511-2S000", "350", "EA", "L-2611-02"},
	}
	if rep := imp(despatch, "despatch-advice", "납품.csv", false); rep.ErrorCount != 0 || rep.Published != 1 {
		t.Fatalf("despatch import: %+v", rep)
	}
	waitFor(t, "B to hold the orders and the despatch", 30*time.Second, func() bool {
		return len(docsHeld(t, b, ch, "order")) == 2 && len(docsHeld(t, b, ch, "despatch-advice")) == 1
	})
	po1 := docsHeld(t, b, ch, "order")["PO-1"][0]
	lines := po1.Record.Body["lines"].([]any)
	if q := lines[0].(map[string]any)["quantity"].(map[string]any); q["value"] != "1200" || q["unit"] != "H87" {
		t.Fatalf("B's PO-1 line 1 quantity %v", q)
	}
	if p := lines[0].(map[string]any)["item"].(map[string]any)["buyerPartNo"]; p != "00123" {
		t.Fatalf("part number %v", p)
	}
	if po1.Record.Author != a.ID() {
		t.Fatalf("author %s", po1.Record.Author)
	}

	// The same file again: nothing new.
	before := a.store.Count()
	if rep := imp(orders, "order", "발주.csv", false); rep.Published != 0 || rep.Versions != 0 || rep.Unchanged != 2 {
		t.Fatalf("second import: %+v", rep)
	}
	if a.store.Count() != before {
		t.Fatalf("the second import stored %d records", a.store.Count()-before)
	}

	// A changed quantity: PO-1 version 2, superseding version 1.
	changed := append([][]string(nil), orders...)
	changed[2] = append([]string(nil), orders[2]...)
	changed[2][7] = "400"
	if rep := imp(changed, "order", "발주.csv", false); rep.Versions != 1 || rep.Unchanged != 1 || rep.Published != 0 {
		t.Fatalf("changed import: %+v", rep)
	}
	waitFor(t, "B to hold PO-1 version 2", 30*time.Second, func() bool { return len(docsHeld(t, b, ch, "order")["PO-1"]) == 2 })
	for _, s := range docsHeld(t, b, ch, "order")["PO-1"] {
		if s.Record.Body["docVersion"] == int64(2) {
			if len(s.Record.Links) != 1 || s.Record.Links[0].Rel != "supersedes" || !s.Record.Links[0].CID.Equals(po1.CID) {
				t.Fatalf("version 2 links %v, want supersedes %s", s.Record.Links, po1.CID)
			}
		}
	}

	// One bad cell: nothing published, the cell named.
	bad := [][]string{orders[0],
		{"PO-3", "2026.11.22", "312-86-00455", "대성정밀", "1", "00125", "볼트", "10", "EA", "2026-12-02"},
		{"PO-3", "2026.11.22", "312-86-00455", "대성정밀", "2", "00126", "너트", "12OO", "EA", "2026-12-02"},
		{"PO-4", "2026.11.22", "312-86-00455", "대성정밀", "1", "00127", "와셔", "5", "EA", "2026-12-02"},
	}
	before = a.store.Count()
	rep = imp(bad, "order", "발주.csv", false)
	if rep.ErrorCount != 1 || rep.Published != 0 || rep.Errors[0].Message != `발주.csv row 3, column 수량: "12OO" is not a number` {
		t.Fatalf("bad file: %+v", rep)
	}
	if a.store.Count() != before {
		t.Fatalf("a file with a bad cell stored %d records", a.store.Count()-before)
	}
}

// TestImportRefusals: the API refuses what it cannot import with a
// message that says what to do.
func TestImportRefusals(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := a.CreateChannel(ctx, "x", "", nil); err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, a)
	for _, c := range []struct {
		query, body string
		status      int
		want        string
	}{
		{"?format=csv", "a", 400, "kind is missing"},
		{"?kind=order&format=pdf", "a", 400, `format "pdf"`},
		{"?kind=note&format=csv", "doc_id\nA\n", 400, "cannot be imported from a table"},
		{"?kind=order&format=csv&encoding=latin1", "a", 400, "want utf-8 or cp949"},
		{"?kind=order&format=xlsx", "not a zip", 400, "not an Excel workbook"},
		{"?kind=order&format=csv&map=%7B", "a", 400, "map is not a JSON object"},
	} {
		status, e, _ := h.do(t, "POST", "/v1/channels/x/import"+c.query, []byte(c.body))
		if status != c.status || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.query, status, e.Message, c.status, c.want)
		}
	}
}

// TestImportEPCIS: GS1's examples import as epcis-event records that the
// partner receives; importing one again publishes nothing; an invalid
// document publishes nothing and says which event breaks which rule.
func TestImportEPCIS(t *testing.T) {
	dir := gs1test.Dir(t)
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "events")
	h := newAPIHarness(t, a)
	c := api.NewClient(h.srv.URL, h.token)
	ctx := t.Context()
	examples, _ := filepath.Glob(filepath.Join(dir, "examples", "*.jsonld"))
	total := 0
	imp := func(path string) *api.ImportReport {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rep, err := c.Import(ctx, "events", f, api.ImportOptions{Format: "epcis", File: filepath.Base(path)}, nil)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		return rep
	}
	for _, f := range examples {
		rep := imp(f)
		if rep.ErrorCount != 0 || rep.Published == 0 || rep.Published != rep.Documents {
			t.Fatalf("%s: %+v", f, rep)
		}
		total += rep.Published
	}
	waitFor(t, "B to hold every event", 30*time.Second, func() bool {
		n := 0
		for _, l := range docsHeld(t, b, ch, protocol.KindEPCISEvent) {
			n += len(l)
		}
		return n == total
	})
	if rep := imp(examples[0]); rep.Published != 0 || rep.Unchanged == 0 {
		t.Fatalf("second import: %+v", rep)
	}
	// One event twice in a file is published once.
	ev := `{"type": "ObjectEvent", "eventTime": "2026-11-25T14:30:00+09:00", "eventTimeZoneOffset": "+09:00", "action": "OBSERVE", "bizStep": "shipping"}`
	twice := filepath.Join(t.TempDir(), "twice.jsonld")
	doc := `{"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-11-25T15:00:00+09:00", "epcisBody": {"eventList": [` + ev + `, ` + ev + `]}}`
	if err := os.WriteFile(twice, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if rep := imp(twice); rep.Published != 1 || rep.Rows != 2 {
		t.Fatalf("an event twice in a file: %+v", rep)
	}
	before := a.store.Count()
	rep := imp(filepath.Join(dir, "invalid", "bad_bizstep.json"))
	if rep.ErrorCount != 1 || rep.Published != 0 || !strings.Contains(rep.Errors[0].Message, "bad_bizstep.json event 1 (ObjectEvent), bizStep") {
		t.Fatalf("invalid document: %+v", rep)
	}
	if a.store.Count() != before {
		t.Fatal("an invalid document stored records")
	}
}

// TestExportImportsBack: a channel's orders exported as CSV (and as
// XLSX) and imported into another channel are the same documents, the
// latest version of each; JSON Lines holds every record.
func TestExportImportsBack(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	src, err := a.CreateChannel(ctx, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	orders := [][]string{
		{"발주번호", "발주일자", "공급사사업자번호", "공급사", "항번", "고객품번", "품명", "수량", "단위", "납기일자", "비고"},
		{"PO-1", "2026.11.20", "312-86-00455", "대성정밀", "1", "00123", "브래킷", "\"1,200\"", "EA", "20261127", "긴급, 오전"},
		{"PO-1", "2026.11.20", "312-86-00455", "대성정밀", "2", "86511-2S000", "하우징", "350", "EA", "2026-11-30", "긴급, 오전"},
		{"PO-2", "2026.11.21", "312-86-00455", "대성정밀", "1", "00123", "브래킷", "40", "개", "2026-12-01", ""},
	}
	for i, r := range orders {
		for j, c := range r {
			if strings.Contains(c, ",") && !strings.HasPrefix(c, "\"") {
				orders[i][j] = "\"" + c + "\""
			}
		}
	}
	if rep, err := a.Import(ctx, src, bytes.NewReader(cp949CSV(t, orders)), api.ImportOptions{Kind: "order", Format: "csv", File: "po.csv"}, nil); err != nil || rep.Published != 2 {
		t.Fatalf("import: %v %+v", err, rep)
	}
	orders[3][7] = "45" // PO-2 changes: version 2 supersedes 1
	if rep, err := a.Import(ctx, src, bytes.NewReader(cp949CSV(t, orders)), api.ImportOptions{Kind: "order", Format: "csv", File: "po.csv"}, nil); err != nil || rep.Versions != 1 {
		t.Fatalf("import: %v %+v", err, rep)
	}
	want := map[string]string{}
	for id, l := range docsHeld(t, a, src, "order") {
		for _, s := range l {
			if len(l) == 1 || s.Record.Body["docVersion"] == int64(2) {
				want[id] = jsonString(t, s.Record.Body)
			}
		}
	}
	for _, format := range []string{"csv", "xlsx"} {
		var out bytes.Buffer
		if err := a.Export(ctx, src, &out, api.ExportOptions{Format: format, Kind: "order"}); err != nil {
			t.Fatalf("export %s: %v", format, err)
		}
		dst, err := a.CreateChannel(ctx, "copy-"+format, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := a.Import(ctx, dst, bytes.NewReader(out.Bytes()), api.ImportOptions{Kind: "order", Format: format, File: "export." + format}, nil)
		if err != nil || rep.ErrorCount != 0 || rep.Published != 2 {
			t.Fatalf("import of the %s export: %v %+v", format, err, rep)
		}
		got := docsHeld(t, a, dst, "order")
		for id, w := range want {
			if len(got[id]) != 1 || jsonString(t, got[id][0].Record.Body) != w {
				t.Fatalf("%s: %s came back as %v, want %s", format, id, got[id], w)
			}
		}
	}
	var jl bytes.Buffer
	if err := a.Export(ctx, src, &jl, api.ExportOptions{Format: "jsonl"}); err != nil {
		t.Fatal(err)
	}
	held, _, err := a.store.ByChannel(src, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(jl.String(), "\n"); n != len(held) {
		t.Fatalf("jsonl holds %d lines, the channel %d records", n, len(held))
	}
	lines := strings.Split(strings.TrimSpace(jl.String()), "\n")
	orderLines := 0
	for _, l := range lines {
		if strings.Contains(l, `"kind":"order"`) {
			orderLines++
		}
	}
	if orderLines != 3 {
		t.Fatalf("jsonl holds %d order records, want 3 (two versions of PO-2):\n%s", orderLines, jl.String())
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestImportTimeZone: dates without an offset are in the zone of the
// node's time_zone.
func TestImportTimeZone(t *testing.T) {
	a := startNodeLog(t, "A", slog.LevelWarn, func(c *Config) { c.TimeZone = "Asia/Ho_Chi_Minh" }, testLogWriter{t})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "vn", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	csv := "doc_id,issue_date,seller_id,line_id,buyer_part_no,quantity,unit,requested_delivery_date\nPO-VN,2026-11-20 08:00,3128600455,1,P1,1,EA,2026-11-27\n"
	if rep, err := a.Import(ctx, ch, strings.NewReader(csv), api.ImportOptions{Kind: "order", Format: "csv"}, nil); err != nil || rep.Published != 1 {
		t.Fatalf("import: %v %+v", err, rep)
	}
	if got := docsHeld(t, a, ch, "order")["PO-VN"][0].Record.Body["issuedAt"]; got != "2026-11-20T08:00:00+07:00" {
		t.Fatalf("issuedAt %v, want 08:00 at +07:00", got)
	}
}

// TestBundleStaysInChannel: --with-links follows links within the
// channel; into another channel only with cross_channel, which also
// brings that channel's governance.
func TestBundleStaysInChannel(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	x, err := a.CreateChannel(ctx, "x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := a.CreateChannel(ctx, "y", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	inY, err := a.Publish(ctx, y, "note", map[string]any{"text": "the supplier's lot"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inX, err := a.Publish(ctx, x, "note", map[string]any{"text": "our shipment"}, []protocol.Link{{Rel: "cites", CID: inY.CID}})
	if err != nil {
		t.Fatal(err)
	}
	channels := func(cross bool) int {
		var buf bytes.Buffer
		if err := a.Export(ctx, x, &buf, api.ExportOptions{Format: "car", CID: inX.CID.String(), WithLinks: true, CrossChannel: cross}); err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Verify(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Records {
			if r.CID.Equals(inY.CID) && !cross {
				t.Fatal("a record of channel y went into x's bundle without cross_channel")
			}
		}
		return len(rep.Channels)
	}
	if n := channels(false); n != 1 {
		t.Fatalf("without cross_channel: %d channels", n)
	}
	if n := channels(true); n != 2 {
		t.Fatalf("with cross_channel: %d channels", n)
	}
	var buf bytes.Buffer
	if err := a.Export(ctx, x, &buf, api.ExportOptions{Format: "csv", CID: inX.CID.String()}); err == nil {
		t.Fatal("a csv export took cid")
	}
}
