package interchange

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Bounds on what opening an XLSX file may unpack: a 100,000-row sheet is
// tens of megabytes of XML. A sheet above maxUnzipXML is unpacked into a
// temporary file rather than memory (excelize's UnzipXMLSizeLimit), so
// memory stays flat as the file grows.
const (
	maxUnzip    = 512 << 20
	maxUnzipXML = 16 << 20
	// maxOtherPart bounds a part other than a sheet or the shared
	// strings: excelize unpacks those into memory.
	maxOtherPart = 8 << 20
)

// xlsxTable reads a sheet with excelize, twice in step: the values as
// Excel shows them (a part number formatted 00000 keeps its zeros) and as
// it stores them (a date's serial number, a long number's digits).
type xlsxTable struct {
	f        *excelize.File
	date1904 bool
	shown    *excelize.Rows
	stored   *excelize.Rows
	row      int
	maxWidth int
}

func newXLSXTable(r io.ReaderAt, size int64, sheet string) (*xlsxTable, error) {
	// Parts that excelize keeps in memory are looked at first, by the
	// sizes the zip says (archive/zip fails a part that unpacks to more).
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, errFile{fmt.Sprintf("not an Excel workbook (.xlsx): %v", err)}
	}
	for _, zf := range zr.File {
		sheetPart := strings.HasPrefix(zf.Name, "xl/worksheets/") || zf.Name == "xl/sharedStrings.xml"
		if !sheetPart && zf.UncompressedSize64 > maxOtherPart {
			return nil, errFile{fmt.Sprintf("the workbook's part %s unpacks to %d MiB: a workbook of tables has no such part (save the sheet alone, as CSV or a new workbook)", zf.Name, zf.UncompressedSize64>>20)}
		}
	}
	f, err := excelize.OpenReader(io.NewSectionReader(r, 0, size), excelize.Options{UnzipSizeLimit: maxUnzip, UnzipXMLSizeLimit: maxUnzipXML})
	if err != nil {
		return nil, errFile{fmt.Sprintf("not an Excel workbook (.xlsx): %v", err)}
	}
	sheets := f.GetSheetList()
	if sheet == "" {
		if len(sheets) == 0 {
			f.Close()
			return nil, errFile{"the workbook has no sheet"}
		}
		sheet = sheets[0]
	} else if idx, _ := f.GetSheetIndex(sheet); idx < 0 {
		f.Close()
		return nil, errFile{fmt.Sprintf("the workbook has no sheet %q; its sheets are %s", sheet, strings.Join(sheets, ", "))}
	}
	shown, err := f.Rows(sheet)
	if err != nil {
		f.Close()
		return nil, errFile{fmt.Sprintf("sheet %q: %v", sheet, err)}
	}
	stored, err := f.Rows(sheet)
	if err != nil {
		shown.Close()
		f.Close()
		return nil, errFile{fmt.Sprintf("sheet %q: %v", sheet, err)}
	}
	props, err := f.GetWorkbookProps()
	if err != nil {
		shown.Close()
		stored.Close()
		f.Close()
		return nil, errFile{fmt.Sprintf("the workbook's properties: %v", err)}
	}
	return &xlsxTable{f: f, shown: shown, stored: stored, date1904: props.Date1904 != nil && *props.Date1904}, nil
}

func (t *xlsxTable) next() ([]cell, int, error) {
	if !t.shown.Next() || !t.stored.Next() {
		if err := errors.Join(t.shown.Error(), t.stored.Error()); err != nil {
			return nil, t.row, errFile{fmt.Sprintf("reading the sheet: %v", err)}
		}
		return nil, t.row, io.EOF
	}
	t.row++
	shown, err := t.shown.Columns()
	if err != nil {
		return nil, t.row, errFile{fmt.Sprintf("row %d: %v", t.row, err)}
	}
	stored, err := t.stored.Columns(excelize.Options{RawCellValue: true})
	if err != nil {
		return nil, t.row, errFile{fmt.Sprintf("row %d: %v", t.row, err)}
	}
	n := max(len(shown), len(stored))
	if n > maxColumns {
		return nil, t.row, errFile{fmt.Sprintf("row %d has %d columns, more than %d", t.row, n, maxColumns)}
	}
	cells := make([]cell, n)
	for i := range cells {
		if i < len(shown) {
			cells[i].text = shown[i]
		}
		if i < len(stored) {
			cells[i].raw = stored[i]
		}
		cells[i].xlsx, cells[i].date1904 = true, t.date1904
	}
	return cells, t.row, nil
}

func (t *xlsxTable) close() {
	t.shown.Close()
	t.stored.Close()
	t.f.Close()
}
