package interchange

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/transform"
)

// Header languages of an export.
const (
	LangKorean  = "ko"
	LangEnglish = "en"
)

// Columns says which of a kind's fields an export writes: those some
// document holds. Feed it every body with Add, then give it to
// NewTableWriter.
type Columns struct {
	spec *kindSpec
	used []bool
}

// NewColumns starts the columns of kind.
func NewColumns(kind string) (*Columns, error) {
	spec, ok := specs[kind]
	if !ok {
		return nil, fmt.Errorf("kind %q cannot be exported as a table: use one of %s (or jsonl)", kind, strings.Join(Kinds(), ", "))
	}
	return &Columns{spec: spec, used: make([]bool, len(spec.fields))}, nil
}

// Add notes the fields body holds.
func (c *Columns) Add(body map[string]any) {
	for i, f := range c.spec.fields {
		if c.used[i] {
			continue
		}
		if g := c.spec.group; g != "" && strings.HasPrefix(f.path, g+".") {
			for _, e := range asList(body[g]) {
				if getPath(e, strings.TrimPrefix(f.path, g+".")) != nil {
					c.used[i] = true
					break
				}
			}
			continue
		}
		c.used[i] = getPath(body, f.path) != nil
	}
}

func getPath(m map[string]any, path string) any {
	var v any = m
	for p := range strings.SplitSeq(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = mm[p]; !ok {
			return nil
		}
	}
	return v
}

// cellText writes a value as a table holds it.
func cellText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = cellText(e)
		}
		return strings.Join(parts, ";")
	}
	return fmt.Sprint(v)
}

// TableWriter writes documents of one kind as a CSV or XLSX table that
// Read reads back into the same bodies: one row per line item, the
// document's fields repeated on each.
type TableWriter struct {
	cols  *Columns
	idx   []int // the fields written, in order
	csv   *csv.Writer
	flush func() error
	xlsx  *excelize.File
	sw    *excelize.StreamWriter
	out   io.Writer
	row   int
}

// NewTableWriter starts a table in format (FormatCSV or FormatXLSX) on
// w, with the headers in lang (LangKorean: the first Korean header of
// each field; LangEnglish: the field names). CSV is UTF-8 with a BOM, so
// that Excel opens it right, or CP949 with encoding EncodingCP949.
func NewTableWriter(w io.Writer, format string, cols *Columns, lang, encoding string) (*TableWriter, error) {
	t := &TableWriter{cols: cols, out: w}
	var head []string
	for i, f := range cols.spec.fields {
		if !cols.used[i] {
			continue
		}
		t.idx = append(t.idx, i)
		h := f.name
		if lang != LangEnglish && len(f.ko) > 0 {
			h = f.ko[0]
		}
		head = append(head, h)
	}
	switch format {
	case FormatCSV:
		out := w
		switch encoding {
		case EncodingCP949:
			tw := transform.NewWriter(w, korean.EUCKR.NewEncoder())
			out = tw
			t.flush = tw.Close
		case EncodingUTF8, EncodingAuto:
			if _, err := io.WriteString(w, "\ufeff"); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("encoding %q: want utf-8 or cp949", encoding)
		}
		t.csv = csv.NewWriter(out)
		t.csv.UseCRLF = true
		if err := t.csv.Write(head); err != nil {
			return nil, err
		}
	case FormatXLSX:
		t.xlsx = excelize.NewFile()
		sw, err := t.xlsx.NewStreamWriter("Sheet1")
		if err != nil {
			return nil, err
		}
		t.sw = sw
		if err := t.xlsxRow(head); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("format %q: want csv or xlsx", format)
	}
	return t, nil
}

func (t *TableWriter) xlsxRow(cells []string) error {
	t.row++
	row := make([]any, len(cells))
	for i, c := range cells {
		row[i] = c // text cells: part numbers keep their zeros
	}
	name, _ := excelize.CoordinatesToCellName(1, t.row)
	return t.sw.SetRow(name, row)
}

// Write writes one document.
func (t *TableWriter) Write(body map[string]any) error {
	spec := t.cols.spec
	entries := []map[string]any{nil}
	if g := spec.group; g != "" {
		if l := asList(body[g]); len(l) > 0 {
			entries = l
		}
	}
	for _, e := range entries {
		cells := make([]string, len(t.idx))
		for j, fi := range t.idx {
			f := spec.fields[fi]
			if g := spec.group; g != "" && strings.HasPrefix(f.path, g+".") {
				if e != nil {
					cells[j] = cellText(getPath(e, strings.TrimPrefix(f.path, g+".")))
				}
				continue
			}
			cells[j] = cellText(getPath(body, f.path))
		}
		var err error
		if t.csv != nil {
			err = t.csv.Write(cells)
		} else {
			err = t.xlsxRow(cells)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Close finishes the table.
func (t *TableWriter) Close() error {
	if t.csv != nil {
		t.csv.Flush()
		if err := t.csv.Error(); err != nil {
			return err
		}
		if t.flush != nil {
			return t.flush()
		}
		return nil
	}
	defer t.xlsx.Close()
	if err := t.sw.Flush(); err != nil {
		return err
	}
	_, err := t.xlsx.WriteTo(t.out)
	return err
}
