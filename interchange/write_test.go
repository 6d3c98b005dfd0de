package interchange

import (
	"bytes"
	"strings"
	"testing"
)

// TestExportReadsBack: documents written as CSV (UTF-8 with a BOM, or
// CP949) or XLSX, with Korean or English headers, read back into the same
// bodies; part numbers keep their zeros.
func TestExportReadsBack(t *testing.T) {
	docs, _, errs := readAll(t, excelCSV(t, orderRows), Options{Kind: "order", Format: FormatCSV, Self: self, File: "발주.csv"})
	if len(errs) != 0 || len(docs) != 2 {
		t.Fatalf("read: %v", errs)
	}
	for _, c := range []struct{ format, lang, enc string }{
		{FormatCSV, LangKorean, EncodingUTF8},
		{FormatCSV, LangEnglish, EncodingCP949},
		{FormatXLSX, LangKorean, ""},
	} {
		t.Run(c.format+"-"+c.lang+"-"+c.enc, func(t *testing.T) {
			cols, err := NewColumns("order")
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				cols.Add(d.Body)
			}
			var buf bytes.Buffer
			w, err := NewTableWriter(&buf, c.format, cols, c.lang, c.enc)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				if err := w.Write(d.Body); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if c.format == FormatCSV && c.enc == EncodingUTF8 && !bytes.HasPrefix(buf.Bytes(), []byte("\ufeff발주번호")) {
				t.Fatalf("UTF-8 export starts %q, want a BOM and Korean headers", buf.Bytes()[:12])
			}
			back, _, errs := readAll(t, buf.Bytes(), Options{Kind: "order", Format: c.format, File: "export"})
			if len(errs) != 0 || len(back) != len(docs) {
				t.Fatalf("read back: %d documents, errors %v", len(back), errs)
			}
			for i := range docs {
				if got, want := jsonOf(back[i].Body), jsonOf(docs[i].Body); got != want {
					t.Fatalf("document %d read back as\n%s\nwant\n%s", i, got, want)
				}
			}
			if c.format == FormatCSV && !strings.Contains(string(buf.Bytes()), "00123") && c.enc != EncodingCP949 {
				t.Fatal("part number lost its zeros")
			}
		})
	}
}
