package interchange

import (
	"bytes"
	"testing"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// FuzzReadCSV: whatever bytes a CSV file holds, reading it never panics,
// and what it gives out passed the kind's schema.
func FuzzReadCSV(f *testing.F) {
	f.Add(excelCSV(f, orderRows), "order")
	f.Add([]byte("\ufeffdoc_id,despatched_at,buyer_id,line_id,order_doc_id,order_line_id,supplier_part_no,quantity,unit\nD,2026-11-25,1388101230,1,P,1,B,1,EA\n"), "despatch-advice")
	f.Add([]byte("실적번호,품번,양품수량,단위,공장,투입품번,투입수량\nR1,P,10,EA,F1,M1,3\nR1,P,10,EA,F1,M2,4\n"), "production-report")
	f.Add([]byte("재고번호,기준일자,창고,품번,재고수량,단위,재고상태\nS1,2026-11-20,W1,P,5,EA,가용\n"), "inventory")
	f.Fuzz(func(t *testing.T, data []byte, kind string) {
		if _, ok := specs[kind]; !ok {
			kind = "order"
		}
		_, _, _ = Read(bytes.NewReader(data), int64(len(data)), Options{Kind: kind, Format: FormatCSV, Self: self}, func(d Document) error {
			if d.DocID == "" || d.Body == nil {
				t.Fatalf("a document without a number or body: %+v", d)
			}
			if err := protocol.ValidateBody(kind, d.Body); err != nil {
				t.Fatalf("a document given out does not pass its kind's schema: %v", err)
			}
			return nil
		})
	})
}

// FuzzReadXLSX: a damaged workbook never panics the reader.
func FuzzReadXLSX(f *testing.F) {
	good := xlsxFile(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = Read(bytes.NewReader(data), int64(len(data)), Options{Kind: "order", Format: FormatXLSX, Self: self}, func(Document) error { return nil })
	})
}
