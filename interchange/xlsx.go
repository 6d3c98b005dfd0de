package interchange

import (
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
	maxUnzip    = 1 << 30
	maxUnzipXML = 16 << 20
)

// xlsxTable reads a sheet with excelize, twice in step: the values as
// Excel shows them (a part number formatted 00000 keeps its zeros) and as
// it stores them (a date's serial number, a long number's digits).
type xlsxTable struct {
	f        *excelize.File
	shown    *excelize.Rows
	stored   *excelize.Rows
	row      int
	maxWidth int
}

func newXLSXTable(r io.ReaderAt, size int64, sheet string) (*xlsxTable, error) {
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
	return &xlsxTable{f: f, shown: shown, stored: stored}, nil
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
		cells[i].xlsx = true
	}
	return cells, t.row, nil
}

func (t *xlsxTable) close() {
	t.shown.Close()
	t.stored.Close()
	t.f.Close()
}
