package interchange

import (
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// Formats of a table.
const (
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
)

// Limits on what a file may hold. A document holds at most the 2,000 lines
// a kind's schema allows; a cell is a short thing in these files.
const (
	maxCell     = 4 << 10
	maxColumns  = 512
	maxErrors   = 200
	maxRowBytes = 1 << 20
	maxLines    = 2000 // a document's lines, as every kind's schema says
)

// Options says how to read a table.
type Options struct {
	Kind     string
	Format   string // FormatCSV or FormatXLSX
	Encoding string // CSV: EncodingAuto, EncodingUTF8 or EncodingCP949
	Sheet    string // XLSX: the sheet; the first one when empty
	// Map maps a company's own column headers to the CSV contract's field
	// names ("PO No" → "doc_id"), before the built-in headers are tried.
	Map map[string]string
	// Zone is the time zone of dates and times written without an offset;
	// Asia/Seoul when nil.
	Zone *time.Location
	// Self is this company as a party ({"scheme": "kr-brn", "id": …}):
	// the kind's own party (the buyer of an order, the seller of a
	// despatch-advice …) when the file does not name it. Nil leaves it
	// to the file.
	Self map[string]any
	// File names the file in error messages.
	File string
	// Checked skips the check of each body against the kind's schema, for
	// a second read of a file whose first read passed it, by a caller
	// that checks again before it uses a body.
	Checked bool
}

// Document is one business document read from a table.
type Document struct {
	DocID string
	// Version is the document's version as the file gives it; 0 when the
	// file has no version column (the body then says 1).
	Version int64
	Body    map[string]any
	// FirstRow and LastRow are the document's rows in the file (the
	// header is row 1 when it is the first line).
	FirstRow, LastRow int
	Lines             int
}

// RowError is a problem with one cell, or one row, of the file.
type RowError struct {
	File   string `json:"file,omitempty"`
	Row    int    `json:"row,omitempty"`
	Event  int    `json:"event,omitempty"` // EPCIS: the event's place in the eventList, from 1
	Column string `json:"column,omitempty"`
	Value  string `json:"value,omitempty"`
	Rule   string `json:"rule"`
}

// String reads `발주.csv row 14, column 수량: "12OO" is not a number`.
func (e RowError) String() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Row > 0 {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "row %d", e.Row)
	}
	if e.Event > 0 {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "event %d", e.Event)
		if e.Value != "" {
			fmt.Fprintf(&b, " (%s)", e.Value)
		}
	}
	if e.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if e.Event > 0 {
			b.WriteString(e.Column)
		} else {
			fmt.Fprintf(&b, "column %s", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Rule)
	return b.String()
}

// Summary counts what a read found.
type Summary struct {
	Encoding  string   `json:"encoding,omitempty"`
	Rows      int      `json:"rows"`
	Documents int      `json:"documents"`
	Lines     int      `json:"lines"`
	Columns   []string `json:"columns"`           // the headers read, in order
	Ignored   []string `json:"ignored,omitempty"` // headers that name no field
	Errors    int      `json:"errors"`            // problems found (at most maxErrors are returned)
}

// ErrTooManyErrors ends a read that found maxErrors problems.
var ErrTooManyErrors = errors.New("interchange: too many errors")

// errFile is a problem with the file as a whole.
type errFile struct{ msg string }

func (e errFile) Error() string { return e.msg }

// Read reads the table in r and calls fn with each document, in file
// order, once its rows are read and its body checked against the kind's
// schema. Problems with rows are collected, up to maxErrors; a document
// with a problem is not given to fn. err is a problem with the file as a
// whole (not a table, no header, fn's error), after which nothing more is
// read. size is the file's size (XLSX needs it; CSV ignores it).
func Read(r io.ReaderAt, size int64, o Options, fn func(Document) error) (Summary, []RowError, error) {
	spec, ok := specs[o.Kind]
	if !ok {
		return Summary{}, nil, fmt.Errorf("kind %q cannot be imported from a table: use one of %s", o.Kind, strings.Join(Kinds(), ", "))
	}
	if o.Zone == nil {
		o.Zone = seoul()
	}
	var t table
	var sum Summary
	switch o.Format {
	case FormatCSV:
		ct, enc, err := newCSVTable(io.NewSectionReader(r, 0, size), o.Encoding)
		if err != nil {
			return sum, nil, err
		}
		sum.Encoding = enc
		t = ct
	case FormatXLSX:
		xt, err := newXLSXTable(r, size, o.Sheet)
		if err != nil {
			return sum, nil, err
		}
		defer xt.close()
		t = xt
	default:
		return sum, nil, fmt.Errorf("format %q: want csv or xlsx", o.Format)
	}
	rd := &reader{spec: spec, o: o, t: t, fn: fn, seen: map[[16]byte]int{}}
	err := rd.run(&sum)
	if errors.Is(err, ErrTooManyErrors) {
		err = nil
	}
	sum.Errors = rd.nerrs
	return sum, rd.errs, err
}

// seoul is the zone of dates written without one, unless told otherwise.
var seoul = sync.OnceValue(func() *time.Location {
	z, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		return time.FixedZone("KST", 9*3600) // no tzdata: Korea keeps no summer time
	}
	return z
})

// table yields a file's rows.
type table interface {
	// next returns the cells of the next row and its number in the file;
	// io.EOF after the last.
	next() ([]cell, int, error)
}

type csvTable struct {
	r   *csv.Reader
	row int
	enc string
}

func newCSVTable(r io.Reader, enc string) (*csvTable, string, error) {
	text, enc, err := decoder(&lineLimit{r: r}, enc)
	if err != nil {
		return nil, "", err
	}
	cr := csv.NewReader(text)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvTable{r: cr, enc: enc}, enc, nil
}

func (t *csvTable) next() ([]cell, int, error) {
	rec, err := t.r.Read()
	t.row++
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, t.row, errFile{fmt.Sprintf("row %d is not CSV: %v", t.row, pe.Err)}
		}
		if errors.Is(err, io.EOF) {
			return nil, t.row, io.EOF
		}
		return nil, t.row, errFile{err.Error()}
	}
	if len(rec) > maxColumns {
		return nil, t.row, errFile{fmt.Sprintf("row %d has %d columns, more than %d", t.row, len(rec), maxColumns)}
	}
	cells := make([]cell, len(rec))
	for i, f := range rec {
		cells[i] = cell{text: f, raw: f}
	}
	return cells, t.row, nil
}

// lineLimit fails a read once a line runs past maxRowBytes, so that a
// file without line ends cannot make the CSV reader hold it whole.
type lineLimit struct {
	r     io.Reader
	run   int
	limit int // maxRowBytes when 0
}

func (l *lineLimit) Read(p []byte) (int, error) {
	limit := l.limit
	if limit == 0 {
		limit = maxRowBytes
	}
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.run = 0
		} else if l.run++; l.run > limit {
			return 0, errFile{fmt.Sprintf("a line of the file is longer than %d bytes", limit)}
		}
	}
	return n, err
}

// reader turns rows into documents.
type reader struct {
	spec  *kindSpec
	o     Options
	t     table
	fn    func(Document) error
	cols  []int // field index for each column, -1 when ignored
	heads []string
	errs  []RowError
	nerrs int
	seen  map[[16]byte]int // document numbers read (hashed), and their first row

	cur     *docBuild
	headRow int
}

// docBuild is a document being read.
type docBuild struct {
	id       string
	first    int
	last     int
	body     map[string]any
	docVals  map[int]string // field → the value on the document's first row
	docRows  map[int]int    // field → that row
	entries  []any
	origins  map[string]origin // JSON pointer → where its value came from
	bad      bool
	version  int64
	hasVer   bool
	rowsRead int
}

type origin struct {
	row    int
	column string
}

func (rd *reader) fail(e RowError) error {
	rd.nerrs++
	if len(rd.errs) < maxErrors {
		e.File = rd.o.File
		rd.errs = append(rd.errs, e)
	}
	if rd.nerrs >= maxErrors {
		return ErrTooManyErrors
	}
	return nil
}

func (rd *reader) run(sum *Summary) error {
	// The header: the first row with a cell that is not empty.
	for {
		cells, row, err := rd.t.next()
		if errors.Is(err, io.EOF) {
			return errFile{"the file has no header row: the first row must name the columns (발주번호, 품번, 수량 … or doc_id, buyer_part_no, quantity …)"}
		}
		if err != nil {
			return err
		}
		if slices.ContainsFunc(cells, func(c cell) bool { return strings.TrimSpace(c.text) != "" }) {
			rd.headRow = row
			if err := rd.header(cells, sum); err != nil {
				return err
			}
			break
		}
	}
	for {
		cells, row, err := rd.t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(cells, func(c cell) bool { return strings.TrimSpace(c.text) != "" }) {
			continue // an empty row
		}
		sum.Rows++
		if err := rd.row(cells, row, sum); err != nil {
			return err
		}
	}
	return rd.finish(sum)
}

// header maps the columns to fields.
func (rd *reader) header(cells []cell, sum *Summary) error {
	byName := map[string]int{}
	for i, f := range rd.spec.fields {
		byName[normHeader(f.name)] = i
	}
	byKo := map[string]int{}
	for i, f := range rd.spec.fields {
		for _, k := range f.ko {
			if _, taken := byKo[normHeader(k)]; !taken {
				byKo[normHeader(k)] = i
			}
		}
	}
	user := map[string]string{}
	for h, f := range rd.o.Map {
		user[normHeader(h)] = f
	}
	rd.cols = make([]int, len(cells))
	used := map[int]string{}
	for i, c := range cells {
		h := strings.TrimSpace(strings.TrimPrefix(c.text, "\ufeff"))
		rd.heads = append(rd.heads, h)
		sum.Columns = append(sum.Columns, h)
		rd.cols[i] = -1
		n := normHeader(h)
		if n == "" {
			continue
		}
		fi, ok := -1, false
		if name, mapped := user[n]; mapped {
			if fi, ok = byName[normHeader(name)]; !ok {
				return errFile{fmt.Sprintf("the mapping file maps column %q to %q, which is not a field of %s: use one of %s", h, name, rd.spec.kind, strings.Join(fieldNames(rd.spec), ", "))}
			}
		} else if fi, ok = byName[n]; !ok {
			fi, ok = byKo[n]
		}
		if !ok {
			sum.Ignored = append(sum.Ignored, h)
			continue
		}
		if prev, dup := used[fi]; dup {
			return errFile{fmt.Sprintf("columns %q and %q both name %s: keep one, or map one of them elsewhere with --map", prev, h, rd.spec.fields[fi].name)}
		}
		used[fi] = h
		rd.cols[i] = fi
	}
	if _, ok := used[0]; !ok {
		return errFile{fmt.Sprintf("no column gives the document number (doc_id, or %s): the columns are %s", strings.Join(rd.spec.fields[0].ko, ", "), strings.Join(rd.heads, ", "))}
	}
	return nil
}

func fieldNames(s *kindSpec) []string {
	out := make([]string, len(s.fields))
	for i, f := range s.fields {
		out[i] = f.name
	}
	return out
}

// row reads one row into the current document, starting a new one when
// the document number changes.
func (rd *reader) row(cells []cell, row int, sum *Summary) error {
	var docID string
	for i, fi := range rd.cols {
		if fi == 0 && i < len(cells) {
			docID = strings.TrimSpace(cells[i].text)
		}
	}
	if docID == "" {
		return rd.fail(RowError{Row: row, Column: rd.headerOf(0), Rule: "no document number: every row names its document"})
	}
	if len(docID) > maxCell {
		return rd.fail(RowError{Row: row, Column: rd.headerOf(0), Rule: fmt.Sprintf("the document number is %d bytes long", len(docID))})
	}
	if rd.cur != nil && rd.cur.id != docID {
		if err := rd.finish(sum); err != nil {
			return err
		}
	}
	if rd.cur == nil {
		key := docKey(docID)
		if first, dup := rd.seen[key]; dup {
			return rd.fail(RowError{Row: row, Column: rd.headerOf(0), Value: docID,
				Rule: fmt.Sprintf("document %s also has rows before, from row %d: its rows must follow each other (sort the file by %s)", docID, first, rd.headerOf(0))})
		}
		rd.seen[key] = row
		rd.cur = &docBuild{id: docID, first: row, body: map[string]any{}, docVals: map[int]string{}, docRows: map[int]int{}, origins: map[string]origin{}}
	}
	d := rd.cur
	d.last = row
	d.rowsRead++
	group := rd.spec.group
	if group != "" && len(d.entries) >= maxLines {
		// The schema allows no more; nothing more of it is kept.
		if !d.bad {
			d.bad = true
			return rd.fail(RowError{Row: row, Column: rd.headerOf(0), Value: d.id, Rule: fmt.Sprintf("document %s has more than %d lines, the most a document holds: split it", d.id, maxLines)})
		}
		return nil
	}
	entry := map[string]any{}
	entryAt := len(d.entries)
	for i, c := range cells {
		if i >= len(rd.cols) || rd.cols[i] < 0 {
			continue
		}
		fi := rd.cols[i]
		f := rd.spec.fields[fi]
		text := strings.TrimSpace(c.text)
		if text == "" {
			continue
		}
		head := rd.heads[i]
		if len(c.text) > maxCell || len(c.raw) > maxCell {
			d.bad = true
			if err := rd.fail(RowError{Row: row, Column: head, Rule: fmt.Sprintf("the cell holds %d bytes, more than %d", len(c.text), maxCell)}); err != nil {
				return err
			}
			continue
		}
		if strings.ContainsRune(c.text, '\ufffd') {
			d.bad = true
			if err := rd.fail(RowError{Row: row, Column: head, Value: text, Rule: "holds bytes that are not text in the file's encoding (is it UTF-8? pass --encoding utf-8)"}); err != nil {
				return err
			}
			continue
		}
		inGroup := group != "" && strings.HasPrefix(f.path, group+".")
		if !inGroup {
			if prev, ok := d.docVals[fi]; ok {
				if prev != text {
					d.bad = true
					if err := rd.fail(RowError{Row: row, Column: head, Value: text,
						Rule: fmt.Sprintf("%q differs from %q on row %d of the same document %s: a document's own fields repeat on each of its rows", text, prev, d.docRows[fi], d.id)}); err != nil {
						return err
					}
				}
				continue
			}
			d.docVals[fi], d.docRows[fi] = text, row
		}
		v, err := parseValue(f.kind, c, rd.o.Zone, f.enum)
		if err != nil {
			d.bad = true
			if err := rd.fail(RowError{Row: row, Column: head, Value: text, Rule: err.Error()}); err != nil {
				return err
			}
			continue
		}
		if f.kind == vList {
			var list []any
			for _, p := range strings.FieldsFunc(v.(string), func(r rune) bool { return r == ';' || r == ',' || r == '\n' }) {
				if p = strings.TrimSpace(p); p != "" {
					list = append(list, p)
				}
			}
			v = list
		}
		if fi == 1 {
			d.version, d.hasVer = v.(int64), true
		}
		if inGroup {
			sub := strings.TrimPrefix(f.path, group+".")
			setPath(entry, sub, v)
			d.origins["/"+group+"/"+strconv.Itoa(entryAt)+"/"+strings.ReplaceAll(sub, ".", "/")] = origin{row, head}
		} else {
			setPath(d.body, f.path, v)
			d.origins["/"+strings.ReplaceAll(f.path, ".", "/")] = origin{row, head}
		}
	}
	if group != "" && len(entry) > 0 {
		d.entries = append(d.entries, entry)
		d.origins["/"+group+"/"+strconv.Itoa(entryAt)] = origin{row: row}
	} else if group == "" && d.rowsRead > 1 {
		d.bad = true
		return rd.fail(RowError{Row: row, Column: rd.headerOf(0), Value: d.id, Rule: fmt.Sprintf("document %s has a row already, row %d: a %s is one row", d.id, d.first, rd.spec.kind)})
	}
	return nil
}

// docKey is what the reader keeps of a document number it has read.
func docKey(id string) [16]byte {
	h := sha256.Sum256([]byte(id))
	return [16]byte(h[:16])
}

// headerOf names the column of field fi as the file has it.
func (rd *reader) headerOf(fi int) string {
	for i, c := range rd.cols {
		if c == fi {
			return rd.heads[i]
		}
	}
	return rd.spec.fields[fi].name
}

// setPath sets v at a dotted path in m, creating the maps on the way.
func setPath(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// finish completes the current document: defaults, parties, the schema
// check, and fn.
func (rd *reader) finish(sum *Summary) error {
	d := rd.cur
	if d == nil {
		return nil
	}
	rd.cur = nil
	if d.bad {
		return nil
	}
	body := d.body
	if rd.spec.group != "" && len(d.entries) > 0 {
		body[rd.spec.group] = d.entries
	}
	if !d.hasVer {
		body["docVersion"] = int64(1)
	}
	if err := rd.parties(d, body); err != nil {
		return err
	}
	if d.bad {
		return nil
	}
	fillDefaults(rd.spec.kind, body)
	if rd.o.Checked {
		// The caller checked this file's bodies on a first read.
	} else if err := protocol.ValidateBody(rd.spec.kind, body); err != nil {
		var be *protocol.BodyError
		if !errors.As(err, &be) {
			return err
		}
		for _, c := range be.Causes {
			if err := rd.fail(rd.locate(d, c)); err != nil {
				return err
			}
		}
		return nil
	}
	sum.Documents++
	lines := 1
	if rd.spec.group != "" {
		lines = max(1, len(d.entries))
	}
	sum.Lines += lines
	doc := Document{DocID: d.id, Body: body, FirstRow: d.first, LastRow: d.last, Lines: lines}
	if d.hasVer {
		doc.Version = d.version
	}
	if err := rd.fn(doc); err != nil {
		return err
	}
	return nil
}

// parties turns the party columns into parties, and names this company
// in its own role when the file does not.
func (rd *reader) parties(d *docBuild, body map[string]any) error {
	for _, role := range []string{"buyer", "seller", "producer", "inspector", "owner"} {
		p, ok := body[role].(map[string]any)
		if !ok {
			if role == rd.spec.self && rd.o.Self != nil {
				body[role] = maps.Clone(rd.o.Self)
			}
			continue
		}
		id, _ := p["id"].(string)
		scheme, _ := p["scheme"].(string)
		if id == "" {
			if role == rd.spec.self && rd.o.Self != nil {
				self := maps.Clone(rd.o.Self)
				if name, ok := p["name"]; ok {
					self["name"] = name
				}
				body[role] = self
			}
			continue
		}
		party, err := partyOf(id, scheme)
		if err != nil {
			o := d.origins["/"+role+"/id"]
			d.bad = true
			return rd.fail(RowError{Row: o.row, Column: o.column, Value: id, Rule: err.Error()})
		}
		if name, ok := p["name"]; ok {
			party["name"] = name
		}
		body[role] = party
	}
	for _, loc := range []string{"shipTo", "site"} {
		if l, ok := body[loc].(map[string]any); ok {
			if _, has := l["scheme"]; !has {
				l["scheme"] = "internal"
			}
		}
	}
	if lines, ok := body["lines"].([]any); ok {
		for _, l := range lines {
			if st, ok := l.(map[string]any)["shipTo"].(map[string]any); ok {
				if _, has := st["scheme"]; !has {
					st["scheme"] = "internal"
				}
			}
		}
	}
	return nil
}

// fillDefaults gives a quantity without a unit the unit of the quantity
// it goes with, and a document without an issue time the time of the
// event it reports.
func fillDefaults(kind string, body map[string]any) {
	unitOf := func(q any) any {
		if m, ok := q.(map[string]any); ok {
			return m["unit"]
		}
		return nil
	}
	fill := func(m map[string]any, unit any, names ...string) {
		if unit == nil {
			return
		}
		for _, n := range names {
			if q, ok := m[n].(map[string]any); ok {
				if _, has := q["unit"]; !has {
					q["unit"] = unit
				}
			}
		}
	}
	switch kind {
	case "receipt":
		for _, l := range asList(body["lines"]) {
			fill(l, unitOf(l["quantityReceived"]), "quantityAccepted", "quantityRejected")
		}
	case "production-report":
		unit := unitOf(body["quantityGood"])
		fill(body, unit, "quantityScrap", "quantityRework")
		for _, c := range asList(body["consumed"]) {
			fill(c, unit, "quantity")
		}
	case "inventory":
		fill(body, unitOf(body["quantity"]), "safetyStock")
	}
	if _, ok := body["issuedAt"]; !ok {
		switch kind {
		case "despatch-advice":
			if t, ok := body["despatchedAt"]; ok {
				body["issuedAt"] = t
			}
		case "receipt":
			if t, ok := body["receivedAt"]; ok {
				body["issuedAt"] = t
			}
		}
	}
}

func asList(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// locate finds the cell a schema error is about: the deepest origin at or
// above its field, or the document's first row.
func (rd *reader) locate(d *docBuild, c protocol.FieldError) RowError {
	p := "/" + c.Field
	for {
		if o, ok := d.origins[p]; ok {
			return RowError{Row: o.row, Column: o.column, Rule: describeRule(c)}
		}
		i := strings.LastIndex(p, "/")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	return RowError{Row: d.first, Rule: fmt.Sprintf("document %s: %s", d.id, describeRule(c))}
}

// describeRule says what a schema error means, with the column a missing
// field would come from.
func describeRule(c protocol.FieldError) string {
	msg := c.Message
	if name, ok := strings.CutPrefix(c.Rule, "required: missing "); ok {
		name = strings.Trim(name, `"`)
		return fmt.Sprintf("%s is missing (%s)", name, msg)
	}
	if c.Field != "" {
		return c.Field + ": " + msg
	}
	return msg
}
