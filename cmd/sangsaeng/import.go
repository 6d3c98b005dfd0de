package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdImport publishes the documents of a CSV or XLSX file.
func cmdImport(ctx context.Context, env *Env, args []string) error {
	f := env.flags("import csv|xlsx|epcis FILE --channel C [--kind K] [--map MAP.toml] [--sheet NAME] [--encoding E] [--dry-run]",
		"Publish the documents of a CSV or Excel file in a channel (가져오기): one row per line\n"+
			"item, rows grouped into documents by document number (발주번호, 납품서번호 …).\n"+
			"Headers are the kind's field names in Korean or English (발주번호 or doc_id, 품번 or\n"+
			"buyer_part_no, 수량 or quantity …); --map names a TOML file of the company's own\n"+
			"headers ([columns] \"PO No\" = \"doc_id\"). A CSV file is UTF-8 or CP949 (what\n"+
			"Korean Excel saves), detected unless --encoding says. Every row is checked first:\n"+
			"when any is wrong, nothing is published and each problem is listed with its row\n"+
			"and column. Importing a file again publishes only what changed, as the next\n"+
			"version of each changed document. --dry-run checks and shows what would be\n"+
			"published. Kinds: "+strings.Join(interchange.Kinds(), ", ")+".\n"+
			"epcis FILE reads a GS1 EPCIS 2.0 JSON document: each event becomes an epcis-event\n"+
			"record (no --kind); an event already imported is not published again.")
	channel := f.String("channel", "", "the `CHANNEL` to publish in (ID or name)")
	kind := f.String("kind", "", "the `KIND` of the documents: "+strings.Join(interchange.Kinds(), ", "))
	mapFile := f.String("map", "", "a TOML `FILE` mapping the file's headers to field names")
	sheet := f.String("sheet", "", "XLSX: the `SHEET` to read (default: the first)")
	encoding := f.String("encoding", "", "CSV: `utf-8 or cp949` (default: detected)")
	dry := f.Bool("dry-run", false, "check the file and show what would be published, publish nothing")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 2, 2); err != nil {
		return err
	}
	format, file := strings.ToLower(pos[0]), pos[1]
	switch format {
	case interchange.FormatCSV, interchange.FormatXLSX:
		if *kind == "" {
			return f.usageErrorf("--kind is required: one of %s", strings.Join(interchange.Kinds(), ", "))
		}
	case interchange.FormatEPCIS:
	default:
		return f.usageErrorf("%q: the first argument is the file's format, csv, xlsx or epcis", pos[0])
	}
	if *channel == "" {
		return f.usageErrorf("--channel is required")
	}
	if _, err := interchange.ParseEncoding(*encoding); err != nil {
		return f.usageErrorf("--encoding: %v", err)
	}
	o := api.ImportOptions{Kind: *kind, Format: format, Encoding: *encoding, Sheet: *sheet, File: filepath.Base(file), DryRun: *dry}
	if *mapFile != "" {
		var m struct {
			Columns map[string]string `toml:"columns"`
		}
		md, err := toml.DecodeFile(*mapFile, &m)
		if err != nil {
			return fmt.Errorf("mapping file %s: %w", *mapFile, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return fmt.Errorf("mapping file %s: %s is not known; the file holds a [columns] table of \"file header\" = \"field_name\"", *mapFile, und[0])
		}
		o.Map = m.Columns
	}
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	bar := newProgressBar(env.Stderr, st.Size())
	body := io.Reader(in)
	if bar != nil {
		body = &countingReader{r: in, fn: bar.sent}
	}
	var progress func(api.ImportProgress)
	if bar != nil {
		progress = bar.report
	}
	rep, err := c.Import(ctx, *channel, body, o, progress)
	bar.done()
	if err != nil && rep == nil {
		return err
	}
	if env.JSON {
		if perr := env.printJSON(rep); perr != nil {
			return perr
		}
	} else {
		printImport(env.Stdout, rep)
	}
	if err != nil {
		return err
	}
	if rep.ErrorCount > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %s in %s; nothing was published", o.File, plural(rep.ErrorCount, "problem"), plural(rep.Rows, "row"))}
	}
	return nil
}

// printImport writes a report for people.
func printImport(w io.Writer, rep *api.ImportReport) {
	for _, e := range rep.Errors {
		fmt.Fprintln(w, e.Message)
	}
	if rep.ErrorCount > len(rep.Errors) {
		fmt.Fprintf(w, "… and %d more problems\n", rep.ErrorCount-len(rep.Errors))
	}
	if rep.DryRun && rep.ErrorCount == 0 {
		for _, d := range rep.Records {
			sup := ""
			if d.Supersedes != "" {
				sup = " supersedes " + d.Supersedes
			}
			fmt.Fprintf(w, "would be %-11s %s v%d  rows %d–%d, %d lines%s\n", d.Action, d.DocID, d.Version, d.Rows[0], d.Rows[1], d.Lines, sup)
		}
	}
	if rep.ErrorCount > 0 {
		return // the caller says nothing was published
	}
	enc := ""
	if rep.Encoding != "" {
		enc = " (" + rep.Encoding + ")"
	}
	fmt.Fprintf(w, "%s%s: %s, %s, %s: ", orDash(rep.File), enc, plural(rep.Rows, "row"), plural(rep.Documents, "document"), plural(rep.Lines, "line"))
	if rep.DryRun {
		fmt.Fprintf(w, "would publish %d new, %d as new versions; %d unchanged", rep.Published, rep.Versions, rep.Unchanged)
	} else {
		fmt.Fprintf(w, "%d published new, %d as new versions; %d unchanged", rep.Published, rep.Versions, rep.Unchanged)
	}
	if rep.Older > 0 {
		fmt.Fprintf(w, ", %d older than what was published", rep.Older)
	}
	if rep.DryRun {
		fmt.Fprint(w, " (dry run: nothing published)")
	}
	fmt.Fprintln(w)
	if len(rep.Ignored) > 0 {
		fmt.Fprintf(w, "columns not imported: %s\n", strings.Join(rep.Ignored, ", "))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// countingReader tells fn how many bytes were read so far.
type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// progressBar draws one line on a terminal: the upload, then what the
// node has checked and published. It is nil when stderr is not a
// terminal.
type progressBar struct {
	w     io.Writer
	size  int64
	last  time.Time
	shown bool
}

func newProgressBar(w io.Writer, size int64) *progressBar {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progressBar{w: w, size: size}
}

func (b *progressBar) draw(line string, force bool) {
	if !force && time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.shown = true
	fmt.Fprintf(b.w, "\r\033[K%s", line)
}

func (b *progressBar) sent(n int64) {
	const width = 30
	frac := 1.0
	if b.size > 0 {
		frac = float64(n) / float64(b.size)
	}
	full := int(frac * width)
	b.draw(fmt.Sprintf("sending  [%s%s] %3.0f%%  %.1f/%.1f MB", strings.Repeat("#", full), strings.Repeat(".", width-full), frac*100, float64(n)/1e6, float64(b.size)/1e6), n == b.size)
}

func (b *progressBar) report(p api.ImportProgress) {
	if p.Phase == "check" {
		b.draw(fmt.Sprintf("checking: %d documents", p.Documents), false)
		return
	}
	const width = 30
	frac := 1.0
	if p.Documents > 0 {
		frac = float64(p.Published) / float64(p.Documents)
	}
	full := min(width, int(frac*width))
	b.draw(fmt.Sprintf("publishing [%s%s] %d/%d documents", strings.Repeat("#", full), strings.Repeat(".", width-full), p.Published, p.Documents), false)
}

func (b *progressBar) done() {
	if b != nil && b.shown {
		fmt.Fprint(b.w, "\r\033[K")
	}
}
