package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// maxImportBytes bounds a file to import: a year of a small factory's
// orders is a few megabytes; 100,000 rows of CSV are about 15.
// maxEPCISBytes bounds an EPCIS document, whose events are decoded whole.
const (
	maxImportBytes = 256 << 20
	maxEPCISBytes  = 32 << 20
)

// importReportRecords bounds the documents listed in a report.
const importReportRecords = 1000

// importPublishers is how many documents an import has in the publisher
// at once, so that they are signed and written in batches.
const importPublishers = 64

// metaImport is the store namespace of what imports published: per
// channel, kind and document number, the version, CID and content hash of
// the last version (importState).
const metaImport = "import"

type importState struct {
	Version int64  `json:"v"`
	CID     string `json:"cid"`
	Hash    string `json:"h"`
}

func importKey(ch cid.Cid, kind, docID string) string {
	return ch.String() + "/" + kind + "/" + docID
}

// contentHash is a document's content, its version left out, so that the
// same document read again is recognised whatever version it is given.
func contentHash(body map[string]any) string {
	c := make(map[string]any, len(body))
	for k, v := range body {
		if k != "docVersion" {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c) // maps marshal with sorted keys
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Import reads a CSV or XLSX file of one kind's documents and publishes
// them in ch. Every row is checked first, against the kind's schema and
// against what earlier imports published; when any is wrong nothing is
// published and the report lists the problems. A document already
// published with the same content is left alone; one whose content
// changed is published as its next version, linked `supersedes` to the
// last. progress, when not nil, is told how far the import is. (See
// docs/design.md, "Interchange".)
func (n *Node) Import(ctx context.Context, ch cid.Cid, r io.Reader, o api.ImportOptions, progress func(api.ImportProgress)) (*api.ImportReport, error) {
	start := time.Now()
	if !n.gov.isJoined(ch) {
		return nil, fmt.Errorf("import into %s: %w", ch, ErrNotJoined)
	}
	enc, err := interchange.ParseEncoding(o.Encoding)
	if err != nil {
		return nil, badf("%v", err)
	}
	switch o.Format {
	case interchange.FormatCSV, interchange.FormatXLSX:
	case interchange.FormatEPCIS:
		if o.Kind == "" {
			o.Kind = protocol.KindEPCISEvent
		}
		if o.Kind != protocol.KindEPCISEvent {
			return nil, badf("an EPCIS document imports as %s records, not %s", protocol.KindEPCISEvent, o.Kind)
		}
	default:
		return nil, badf("format %q: want csv, xlsx or epcis", o.Format)
	}
	if progress == nil {
		progress = func(api.ImportProgress) {}
	}
	// The file is read twice (checked whole, then published), so it is
	// kept in a temporary file, not in memory. An EPCIS document is
	// decoded an event at a time, each event whole: it is bounded lower.
	limit := int64(maxImportBytes)
	if o.Format == interchange.FormatEPCIS {
		limit = maxEPCISBytes
	}
	tmp, size, err := spool(n.cfg.Home, r, limit)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	// Imports of one node run one at a time: two of the same file must
	// not both publish its documents.
	n.importMu.Lock()
	defer n.importMu.Unlock()

	name, brn := n.profile()
	self := map[string]any{"scheme": "peer", "id": n.self.String()}
	if brn != "" {
		self = map[string]any{"scheme": "kr-brn", "id": brn}
	}
	if name != "" {
		self["name"] = name
	}
	n.cfgMu.RLock()
	zone := n.cfg.zone()
	n.cfgMu.RUnlock()
	opts := interchange.Options{Kind: o.Kind, Format: o.Format, Encoding: enc, Sheet: o.Sheet, Map: o.Map, Self: self, File: o.File, Zone: zone}
	rep := &api.ImportReport{File: o.File, Kind: o.Kind, Channel: ch.String(), DryRun: o.DryRun}
	read := func(fn func(interchange.Document) error) (interchange.Summary, []interchange.RowError, error) {
		if o.Format != interchange.FormatEPCIS {
			return interchange.Read(tmp, size, opts, fn)
		}
		// An EPCIS event is a document of its own, named by its eventID,
		// or by its content when it has none.
		var sum interchange.Summary
		inFile := map[string]bool{}
		n, errs, err := interchange.ReadEPCIS(io.NewSectionReader(tmp, 0, size), o.File, func(i int, ev map[string]any) error {
			id, _ := ev["eventID"].(string)
			if id == "" {
				id = "sha256:" + contentHash(ev)
			}
			if inFile[id] {
				return nil // the same event again in the file: once is enough
			}
			inFile[id] = true
			sum.Documents++
			sum.Lines++
			return fn(interchange.Document{DocID: id, Body: ev, FirstRow: i, LastRow: i, Lines: 1})
		})
		sum.Rows, sum.Errors = n, len(errs)
		return sum, errs, err
	}

	// Pass 1: every row, and what would become of each document.
	var plan []api.ImportedDocument
	var planErrs []interchange.RowError
	docs := 0
	sum, rowErrs, err := read(func(d interchange.Document) error {
		docs++
		a, perr := n.importAction(ch, o.Kind, d)
		if perr != nil {
			planErrs = append(planErrs, *perr)
			return nil
		}
		if len(plan) < importReportRecords {
			if o.DryRun && len(plan) < importReportBodies {
				a.Body = d.Body // what would be published, to look at first
			}
			plan = append(plan, a)
		}
		count(rep, a.Action)
		if docs%1000 == 0 {
			progress(api.ImportProgress{Phase: "check", Documents: docs})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, importFileError(o.File, err)
	}
	rep.Encoding, rep.Rows, rep.Documents, rep.Lines = sum.Encoding, sum.Rows, sum.Documents, sum.Lines
	rep.Columns, rep.Ignored = sum.Columns, sum.Ignored
	rep.ErrorCount = sum.Errors + len(planErrs)
	for _, e := range append(rowErrs, planErrs...) {
		if len(rep.Errors) < 200 {
			rep.Errors = append(rep.Errors, api.ImportError{File: e.File, Row: e.Row, Column: e.Column, Value: e.Value, Rule: e.Rule, Message: e.String()})
		}
	}
	if rep.ErrorCount > 0 || o.DryRun {
		rep.Records = plan
		if rep.ErrorCount > 0 {
			rep.Published, rep.Versions, rep.Unchanged, rep.Older = 0, 0, 0, 0
		}
		rep.Seconds = time.Since(start).Seconds()
		return rep, nil
	}

	// Pass 2: publish, a batch of documents at a time.
	rep.Published, rep.Versions, rep.Unchanged, rep.Older = 0, 0, 0, 0
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, importPublishers)
		done     int
	)
	rep.Records = nil
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	opts.Checked = true // pass 1 did; Publish checks each body again
	_, _, err = read(func(d interchange.Document) error {
		mu.Lock()
		stop := firstErr
		mu.Unlock()
		if stop != nil {
			return stop
		}
		a, perr := n.importAction(ch, o.Kind, d)
		if perr != nil { // changed since pass 1: another writer
			return errors.New(perr.String())
		}
		if a.Action == "unchanged" || a.Action == "older" {
			mu.Lock()
			count(rep, a.Action)
			if len(rep.Records) < importReportRecords {
				rep.Records = append(rep.Records, a)
			}
			mu.Unlock()
			return nil
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if o.Kind != protocol.KindEPCISEvent {
				d.Body["docVersion"] = a.Version
			}
			var links []protocol.Link
			if a.Supersedes != "" {
				c, _ := cid.Decode(a.Supersedes)
				links = append(links, protocol.Link{Rel: "supersedes", CID: c})
			}
			s, err := n.Publish(ctx, ch, o.Kind, d.Body, links)
			if err != nil {
				fail(fmt.Errorf("publishing document %s (rows %d–%d): %w", d.DocID, d.FirstRow, d.LastRow, err))
				return
			}
			st, _ := json.Marshal(importState{Version: a.Version, CID: s.CID.String(), Hash: contentHash(d.Body)})
			if err := n.store.PutMeta(metaImport, importKey(ch, o.Kind, d.DocID), st); err != nil {
				fail(fmt.Errorf("document %s was published as %s, but the import's own record of it was not kept (a second import would publish it again): %w", d.DocID, s.CID, n.storeFailed(opMeta, err)))
				return
			}
			a.CID = s.CID.String()
			mu.Lock()
			count(rep, a.Action)
			if len(rep.Records) < importReportRecords {
				rep.Records = append(rep.Records, a)
			}
			done++
			p := done
			mu.Unlock()
			if p%500 == 0 {
				progress(api.ImportProgress{Phase: "publish", Documents: docs, Published: p})
			}
		})
		return nil
	})
	wg.Wait()
	if err == nil {
		err = firstErr
	}
	rep.Seconds = time.Since(start).Seconds()
	if err != nil {
		return rep, fmt.Errorf("import of %s stopped after %d of %d documents were published (importing the file again publishes the rest, not those twice): %w", o.File, rep.Published+rep.Versions, rep.Documents, err)
	}
	progress(api.ImportProgress{Phase: "publish", Documents: docs, Published: done})
	return rep, nil
}

func count(rep *api.ImportReport, action string) {
	switch action {
	case "published":
		rep.Published++
	case "new-version":
		rep.Versions++
	case "unchanged":
		rep.Unchanged++
	case "older":
		rep.Older++
	}
}

// importReportBodies is how many documents of a dry run the report shows
// whole, as they would be published.
const importReportBodies = 100

// importAction decides what to do with a document read from a file, from
// what earlier imports published.
func (n *Node) importAction(ch cid.Cid, kind string, d interchange.Document) (api.ImportedDocument, *interchange.RowError) {
	a := api.ImportedDocument{DocID: d.DocID, Rows: [2]int{d.FirstRow, d.LastRow}, Lines: d.Lines}
	var prev importState
	b, err := n.store.GetMeta(metaImport, importKey(ch, kind, d.DocID))
	have := err == nil && json.Unmarshal(b, &prev) == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return a, &interchange.RowError{Row: d.FirstRow, Rule: fmt.Sprintf("document %s: the store cannot say whether it was imported before: %v", d.DocID, err)}
	}
	h := contentHash(d.Body)
	if kind == protocol.KindEPCISEvent {
		switch {
		case !have:
			a.Action = "published"
		case prev.Hash == h:
			a.Action, a.CID = "unchanged", prev.CID
		default:
			return a, &interchange.RowError{Event: d.FirstRow, Rule: fmt.Sprintf("event %s was imported before (%s) with other content: an EPCIS event does not change; record a correction as a new event with an errorDeclaration", d.DocID, prev.CID)}
		}
		return a, nil
	}
	switch {
	case !have:
		a.Action, a.Version = "published", max(d.Version, 1)
	case d.Version == 0 && prev.Hash == h, d.Version == prev.Version && prev.Hash == h:
		a.Action, a.Version, a.CID = "unchanged", prev.Version, prev.CID
	case d.Version == 0:
		a.Action, a.Version, a.Supersedes = "new-version", prev.Version+1, prev.CID
	case d.Version < prev.Version:
		a.Action, a.Version, a.CID = "older", d.Version, ""
	case d.Version == prev.Version:
		return a, &interchange.RowError{Row: d.FirstRow, Rule: fmt.Sprintf("document %s version %d was published before (%s) with other content: give the changed document version %d, or leave the version column out and the import numbers it", d.DocID, d.Version, prev.CID, prev.Version+1)}
	default:
		a.Action, a.Version, a.Supersedes = "new-version", d.Version, prev.CID
	}
	return a, nil
}

// importFileError names the file in a problem with it as a whole.
func importFileError(file string, err error) error {
	if file == "" {
		file = "the file"
	}
	return badf("%s: %v", file, err)
}

// spool copies r into a temporary file in the node's home, up to limit
// bytes.
func spool(home string, r io.Reader, limit int64) (*os.File, int64, error) {
	dir := filepath.Join(home, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	f, err := os.CreateTemp(dir, "import-*")
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("%w: the file is over %d MiB; split it", protocol.ErrTooLarge, limit>>20)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}
