package interchange

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/korean"
)

// excelCSV writes rows the way Korean Excel saves "CSV (쉼표로 분리)":
// CP949, CRLF, no BOM, fields quoted only when they must be.
func excelCSV(t testing.TB, rows [][]string) []byte {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		for i, f := range r {
			if i > 0 {
				b.WriteByte(',')
			}
			if strings.ContainsAny(f, ",\"\r\n") {
				f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
			}
			b.WriteString(f)
		}
		b.WriteString("\r\n")
	}
	out, err := korean.EUCKR.NewEncoder().Bytes([]byte(b.String()))
	if err != nil {
		t.Fatalf("encoding to CP949: %v", err)
	}
	return out
}

func readAll(t testing.TB, data []byte, o Options) ([]Document, Summary, []RowError) {
	t.Helper()
	var docs []Document
	sum, errs, err := Read(bytes.NewReader(data), int64(len(data)), o, func(d Document) error {
		docs = append(docs, d)
		return nil
	})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return docs, sum, errs
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var orderRows = [][]string{
	{"발주번호", "발주일자", "공급사사업자번호", "공급사", "항번", "고객품번", "품명", "수량", "단위", "납기일자", "단가", "비고", "담당자"},
	{"PO-2026-0001", "2026.11.20", "312-86-00455", "대성정밀", "1", "00123", "브래킷 똠방", "1,200", "EA", "20261127", "1,500", "긴급", "김철수"},
	{"PO-2026-0001", "2026.11.20", "312-86-00455", "대성정밀", "2", "86511-2S000", "하우징", "350", "EA", "2026-11-30", "", "긴급", "김철수"},
	{"PO-2026-0002", "2026-11-21", "312-86-00455", "대성정밀", "1", "00123", "브래킷", "40", "개", "2026/12/01", "", "", ""},
}

var self = map[string]any{"scheme": "kr-brn", "id": "1388101230", "name": "한빛모터스"}

// TestCP949OrderCSV: a CP949 file with Korean headers, as Excel saves it,
// reads into two orders: rows grouped by PO number, thousands separators
// gone, part numbers kept as text, dates in the four ways people write
// them, the buyer filled in as this company, a UHC-only syllable (똠)
// intact, and an unknown column reported as ignored.
func TestCP949OrderCSV(t *testing.T) {
	data := excelCSV(t, orderRows)
	docs, sum, errs := readAll(t, data, Options{Kind: "order", Format: FormatCSV, Self: self, File: "발주.csv"})
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if sum.Encoding != EncodingCP949 || sum.Documents != 2 || sum.Lines != 3 || sum.Rows != 3 || jsonOf(sum.Ignored) != `["담당자"]` {
		t.Fatalf("summary %+v", sum)
	}
	d := docs[0]
	want := `{"buyer":{"id":"1388101230","name":"한빛모터스","scheme":"kr-brn"},"docId":"PO-2026-0001","docVersion":1,"issuedAt":"2026-11-20T00:00:00+09:00",` +
		`"lines":[{"item":{"buyerPartNo":"00123","description":"브래킷 똠방"},"lineId":"1","quantity":{"unit":"H87","value":"1200"},"requestedDelivery":{"date":"2026-11-27"},"unitPrice":{"amount":"1500"}},` +
		`{"item":{"buyerPartNo":"86511-2S000","description":"하우징"},"lineId":"2","quantity":{"unit":"H87","value":"350"},"requestedDelivery":{"date":"2026-11-30"}}],` +
		`"note":"긴급","seller":{"id":"3128600455","name":"대성정밀","scheme":"kr-brn"}}`
	if got := jsonOf(d.Body); got != want {
		t.Fatalf("first order:\n got %s\nwant %s", got, want)
	}
	if d.FirstRow != 2 || d.LastRow != 3 || d.Version != 0 || docs[1].DocID != "PO-2026-0002" {
		t.Fatalf("documents %+v", docs)
	}
}

// TestBadCellNamed: one bad cell is reported with the file, row, column
// and rule, and its document is not given out; the others are.
func TestBadCellNamed(t *testing.T) {
	rows := append([][]string(nil), orderRows...)
	rows[2] = append([]string(nil), rows[2]...)
	rows[2][7] = "12OO"
	docs, _, errs := readAll(t, excelCSV(t, rows), Options{Kind: "order", Format: FormatCSV, Self: self, File: "발주.csv"})
	if len(errs) != 1 || errs[0].String() != `발주.csv row 3, column 수량: "12OO" is not a number` {
		t.Fatalf("errors %v", errs)
	}
	if len(docs) != 1 || docs[0].DocID != "PO-2026-0002" {
		t.Fatalf("documents given out: %+v", docs)
	}
}

// TestRowErrors: what a person gets wrong in a file, each named where it
// is.
func TestRowErrors(t *testing.T) {
	head := []string{"발주번호", "발주일자", "공급사사업자번호", "항번", "품번", "수량", "단위", "납기일자"}
	cases := []struct {
		name string
		rows [][]string
		want string
	}{
		{"scattered document", [][]string{head,
			{"A", "2026-11-20", "3128600455", "1", "P1", "1", "EA", "2026-11-27"},
			{"B", "2026-11-20", "3128600455", "1", "P1", "1", "EA", "2026-11-27"},
			{"A", "2026-11-20", "3128600455", "2", "P2", "1", "EA", "2026-11-27"}},
			`x.csv row 4, column 발주번호: document A also has rows before, from row 2: its rows must follow each other (sort the file by 발주번호)`},
		{"date", [][]string{head, {"A", "20.11.2026", "3128600455", "1", "P1", "1", "EA", "2026-11-27"}},
			`x.csv row 2, column 발주일자: "20.11.2026" is not a date: write it as 2026-11-20, 2026.11.20, 20261120, or with a time, 2026-11-20 14:30`},
		{"brn", [][]string{head, {"A", "2026-11-20", "312-86-00456", "1", "P1", "1", "EA", "2026-11-27"}},
			`x.csv row 2, column 공급사사업자번호: "312-86-00456" is not a valid business registration number (its check digit is wrong)`},
		{"unit", [][]string{head, {"A", "2026-11-20", "3128600455", "1", "P1", "1", "박스들", "2026-11-27"}},
			`x.csv row 2, column 단위: "박스들" is not a unit: use a UN/ECE Rec 20 code (H87 piece, KGM, MTR, LTR, SET …) or EA, PCS, KG, M`},
		{"differs", [][]string{head,
			{"A", "2026-11-20", "3128600455", "1", "P1", "1", "EA", "2026-11-27"},
			{"A", "2026-11-21", "3128600455", "2", "P2", "1", "EA", "2026-11-27"}},
			`x.csv row 3, column 발주일자: "2026-11-21" differs from "2026-11-20" on row 2 of the same document A: a document's own fields repeat on each of its rows`},
		{"scientific", [][]string{head, {"A", "2026-11-20", "3128600455", "1", "8.65E+09", "1", "EA", "2026-11-27"}},
			`x.csv row 2, column 품번: "8.65E+09" looks like a number Excel rewrote in scientific notation: format the column as text in Excel and save the file again`},
		{"no document number", [][]string{head, {"", "2026-11-20", "3128600455", "1", "P1", "1", "EA", "2026-11-27"}},
			`x.csv row 2, column 발주번호: no document number: every row names its document`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, errs := readAll(t, excelCSV(t, c.rows), Options{Kind: "order", Format: FormatCSV, Self: self, File: "x.csv"})
			if len(errs) == 0 || errs[0].String() != c.want {
				t.Fatalf("errors %v\nwant %s", errs, c.want)
			}
		})
	}
}

// TestSchemaErrorLocated: a rule of the kind's schema that a row breaks
// is reported at its row.
func TestSchemaErrorLocated(t *testing.T) {
	rows := [][]string{{"doc_id", "issue_date", "seller_id", "line_id", "buyer_part_no", "quantity", "requested_delivery_date"},
		{"A", "2026-11-20", "3128600455", "1", "P1", "5", "2026-11-27"}}
	_, _, errs := readAll(t, excelCSV(t, rows), Options{Kind: "order", Format: FormatCSV, Self: self, File: "po.csv"})
	if len(errs) != 1 || errs[0].Row != 2 || !strings.Contains(errs[0].Rule, "unit") {
		t.Fatalf("errors %v", errs)
	}
}

// TestUTF8WithBOMAndMap: UTF-8 with a BOM and English snake_case headers,
// plus a company's own column names through the mapping.
func TestUTF8WithBOMAndMap(t *testing.T) {
	csv := "\ufeffdelivery no,despatched_at,buyer_id,line_id,order_doc_id,order_line_id,supplier_part_no,quantity,unit,lot_id\n" +
		"DN-1,2026-11-25 14:30,1388101230,1,PO-2026-0001,1,B-100,\"1,200\",EA,L1;L2\n"
	docs, sum, errs := readAll(t, []byte(csv), Options{Kind: "despatch-advice", Format: FormatCSV, Self: map[string]any{"scheme": "kr-brn", "id": "3128600455"},
		Map: map[string]string{"Delivery No": "doc_id"}})
	if len(errs) != 0 || sum.Encoding != EncodingUTF8 || len(docs) != 1 {
		t.Fatalf("errors %v, summary %+v", errs, sum)
	}
	b := docs[0].Body
	if b["despatchedAt"] != "2026-11-25T14:30:00+09:00" || b["issuedAt"] != b["despatchedAt"] || jsonOf(b["seller"]) != `{"id":"3128600455","scheme":"kr-brn"}` {
		t.Fatalf("body %s", jsonOf(b))
	}
	if got := jsonOf(b["lines"]); got != `[{"item":{"supplierPartNo":"B-100"},"lineId":"1","lotIds":["L1","L2"],"orderRef":{"docId":"PO-2026-0001","lineId":"1"},"quantity":{"unit":"H87","value":"1200"}}]` {
		t.Fatalf("lines %s", got)
	}
}

// TestNotCP949: bytes that are neither UTF-8 nor CP949 are refused where
// they are, not read as U+FFFD.
func TestNotCP949(t *testing.T) {
	rows := [][]string{{"발주번호", "발주일자", "공급사사업자번호", "항번", "품번", "수량", "단위", "납기일자", "비고"},
		{"A", "2026-11-20", "3128600455", "1", "P1", "1", "EA", "2026-11-27", "X"}}
	data := excelCSV(t, rows)
	data = bytes.Replace(data, []byte("X\r\n"), []byte("\xff\xfe\r\n"), 1) // bytes CP949 has no character for
	_, _, errs := readAll(t, data, Options{Kind: "order", Format: FormatCSV, Self: self, File: "발주.csv"})
	if len(errs) != 1 || errs[0].String() != `발주.csv row 2, column 비고: holds bytes that are not text in the file's encoding (is it UTF-8? pass --encoding utf-8)` {
		t.Fatalf("errors %v", errs)
	}
}

// xlsxFile writes a workbook the way an ERP export looks: a part number
// as text ("00123"), one as a number formatted 00000, a long number, a
// date as a serial number with a date format, a quantity as a number.
func xlsxFile(t testing.TB) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	sh := "발주"
	if err := f.SetSheetName("Sheet1", sh); err != nil {
		t.Fatal(err)
	}
	rows := [][]any{
		{"발주번호", "발주일자", "공급사사업자번호", "항번", "고객품번", "자사품번", "수량", "단위", "납기일자"},
		{"PO-7", 46346.0, "3128600455", "1", "00123", 456.0, 1200.0, "EA", 46353.0},
		{"PO-7", 46346.0, "3128600455", "2", "00124", 865112000000001.0, 0.5, "KG", 46353.0},
	}
	for i, r := range rows {
		cellName, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow(sh, cellName, &r); err != nil {
			t.Fatal(err)
		}
	}
	dateStyle, _ := f.NewStyle(&excelize.Style{NumFmt: 14})
	zeros := "00000"
	zeroStyle, _ := f.NewStyle(&excelize.Style{CustomNumFmt: &zeros})
	f.SetCellStyle(sh, "B2", "B3", dateStyle)
	f.SetCellStyle(sh, "I2", "I3", dateStyle)
	f.SetCellStyle(sh, "F2", "F2", zeroStyle)
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestXLSXKeepsPartNumbersAndDates: "00123" stays "00123", a number
// formatted 00000 is read as Excel shows it, a 15-digit number keeps its
// digits, and serial dates are the dates they show.
func TestXLSXKeepsPartNumbersAndDates(t *testing.T) {
	docs, _, errs := readAll(t, xlsxFile(t), Options{Kind: "order", Format: FormatXLSX, Self: self, File: "발주.xlsx"})
	if len(errs) != 0 || len(docs) != 1 {
		t.Fatalf("errors %v, %d documents", errs, len(docs))
	}
	b := docs[0].Body
	if b["issuedAt"] != "2026-11-20T00:00:00+09:00" {
		t.Errorf("issuedAt %v, want 2026-11-20 (serial 46346)", b["issuedAt"])
	}
	want := `[{"item":{"buyerPartNo":"00123","supplierPartNo":"00456"},"lineId":"1","quantity":{"unit":"H87","value":"1200"},"requestedDelivery":{"date":"2026-11-27"}},` +
		`{"item":{"buyerPartNo":"00124","supplierPartNo":"865112000000001"},"lineId":"2","quantity":{"unit":"KGM","value":"0.5"},"requestedDelivery":{"date":"2026-11-27"}}]`
	if got := jsonOf(b["lines"]); got != want {
		t.Fatalf("lines\n got %s\nwant %s", got, want)
	}
}

// TestHeaderProblems: a file without the document number column, or
// with two columns for one field, is refused as a whole, saying which.
func TestHeaderProblems(t *testing.T) {
	for _, c := range []struct{ csv, want string }{
		{"품번,수량\nP1,1\n", "no column gives the document number"},
		{"발주번호,PO번호\nA,B\n", `columns "발주번호" and "PO번호" both name doc_id`},
		{"", "no header row"},
	} {
		_, _, err := Read(strings.NewReader(c.csv), int64(len(c.csv)), Options{Kind: "order", Format: FormatCSV}, func(Document) error { return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.csv, err, c.want)
		}
	}
}

// TestXLSXFormulaAnd1904: a formula's floating-point result is the number
// Excel shows, a workbook that counts dates from 1904 gives the dates it
// shows, and serial 60 (Excel's 1900-02-29, which never was) is refused.
func TestXLSXFormulaAnd1904(t *testing.T) {
	build := func(date1904 bool, dateSerial float64) []byte {
		f := excelize.NewFile()
		defer f.Close()
		if date1904 {
			d := true
			if err := f.SetWorkbookProps(&excelize.WorkbookPropsOptions{Date1904: &d}); err != nil {
				t.Fatal(err)
			}
		}
		row := []any{"발주번호", "발주일자", "공급사사업자번호", "항번", "품번", "수량", "단위", "납기일자"}
		f.SetSheetRow("Sheet1", "A1", &row)
		row = []any{"PO-9", dateSerial, "3128600455", "1", "P1", nil, "KG", "2026-11-27"}
		f.SetSheetRow("Sheet1", "A2", &row)
		f.SetCellFormula("Sheet1", "F2", "0.1+0.2")
		f.SetCellValue("Sheet1", "F2", 0.30000000000000004) // the cached result Excel saves
		f.SetCellFormula("Sheet1", "F2", "0.1+0.2")
		var buf bytes.Buffer
		if _, err := f.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	// 46346 in the 1900 system, 44884 in the 1904 one: 2026-11-20.
	for _, c := range []struct {
		date1904 bool
		serial   float64
	}{{false, 46346}, {true, 46346 - 1462}} {
		docs, _, errs := readAll(t, build(c.date1904, c.serial), Options{Kind: "order", Format: FormatXLSX, Self: self})
		if len(errs) != 0 || len(docs) != 1 {
			t.Fatalf("1904=%v: %v", c.date1904, errs)
		}
		if got := docs[0].Body["issuedAt"]; got != "2026-11-20T00:00:00+09:00" {
			t.Errorf("1904=%v: issuedAt %v", c.date1904, got)
		}
		if q := docs[0].Body["lines"].([]any)[0].(map[string]any)["quantity"].(map[string]any)["value"]; q != "0.3" {
			t.Errorf("the formula's result read as %v, want 0.3", q)
		}
	}
	_, _, errs := readAll(t, build(false, 60), Options{Kind: "order", Format: FormatXLSX, Self: self})
	if len(errs) != 1 || !strings.Contains(errs[0].Rule, "did not exist") {
		t.Fatalf("serial 60: %v", errs)
	}
}

// TestLongLinesAndBigDocuments: a UTF-8 line longer than the CSV reader's
// buffer reads; a document of more than 2,000 lines is refused once,
// without keeping them all.
func TestLongLinesAndBigDocuments(t *testing.T) {
	csv := "발주번호,발주일자,공급사사업자번호,항번,품번,수량,단위,납기일자,기타\n" +
		"A,2026-11-20,3128600455,1,P1,1,EA,2026-11-27," + strings.Repeat("가", 1500) + "\n"
	if docs, _, errs := readAll(t, []byte(csv), Options{Kind: "order", Format: FormatCSV, Self: self}); len(errs) != 0 || len(docs) != 1 {
		t.Fatalf("a long line: %v", errs)
	}
	var b strings.Builder
	b.WriteString("발주번호,발주일자,공급사사업자번호,항번,품번,수량,단위,납기일자\n")
	for i := range 2500 {
		fmt.Fprintf(&b, "BIG,2026-11-20,3128600455,%d,P1,1,EA,2026-11-27\n", i+1)
	}
	_, _, errs := readAll(t, []byte(b.String()), Options{Kind: "order", Format: FormatCSV, Self: self})
	if len(errs) != 1 || !strings.Contains(errs[0].String(), "row 2002, column 발주번호: document BIG has more than 2000 lines") {
		t.Fatalf("a big document: %v", errs)
	}
}
