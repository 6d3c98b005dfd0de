package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/evidence"
	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// exportPage bounds the envelope bytes an export reads from the store at
// once.
const exportPage = 1 << 20

// Export writes the records of channel ch to w: as JSON Lines (one record
// in its API shape per line), or, for one of the table kinds, as a CSV or
// XLSX table that `import` reads back into the same documents (the latest
// version of each: a document superseded by another is left out). Records
// come in the order the node stored them. (See docs/design.md,
// "Interchange".)
func (n *Node) Export(ctx context.Context, ch cid.Cid, w io.Writer, o api.ExportOptions) error {
	if !n.gov.isJoined(ch) {
		return fmt.Errorf("export %s: %w", ch, ErrNotJoined)
	}
	var since int64
	if o.Since != "" {
		n.cfgMu.RLock()
		zone := n.cfg.zone()
		n.cfgMu.RUnlock()
		t, err := parseSince(o.Since, zone)
		if err != nil {
			return badf("since %q: %v", o.Since, err)
		}
		since = t.UnixMilli()
	}
	if o.Kind != "" && !protocol.KnownKind(o.Kind) {
		return badf("kind %q is not a record kind (see `sangsaeng kinds`)", o.Kind)
	}
	if (o.CID != "" || o.WithLinks || o.CrossChannel) && o.Format != "car" {
		return badf("cid, with_links and cross_channel go with format car")
	}
	if o.CID != "" && (o.Kind != "" || o.Since != "") {
		return badf("a bundle of one record (cid) takes no kind or since")
	}
	if (o.WithLinks || o.CrossChannel) && o.CID == "" {
		return badf("with_links and cross_channel go with cid")
	}
	each := func(fn func(*protocol.Signed) error) error {
		var after uint64
		for {
			recs, next, err := n.store.Arrivals(after, ch, exportPage)
			if err != nil {
				return err
			}
			if len(recs) == 0 && next == after {
				return nil
			}
			after = next
			for _, a := range recs {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := a.Record.Record
				if (o.Kind != "" && r.Kind != o.Kind) || r.Time < since {
					continue
				}
				if err := fn(a.Record); err != nil {
					return err
				}
			}
		}
	}
	switch o.Format {
	case "jsonl", "":
		return each(func(s *protocol.Signed) error {
			j, err := s.MarshalJSON()
			if err != nil {
				return err
			}
			_, err = w.Write(append(j, '\n'))
			return err
		})
	case interchange.FormatEPCIS:
		return n.exportEPCIS(ch, o, w, each)
	case "car":
		return n.exportCAR(ctx, ch, o, w, each)
	case interchange.FormatCSV, interchange.FormatXLSX:
	default:
		return badf("format %q: want jsonl, csv, xlsx or epcis", o.Format)
	}
	if o.Kind == "" {
		return badf("a %s export is one kind's table: give kind (one of %v)", o.Format, interchange.Kinds())
	}
	cols, err := interchange.NewColumns(o.Kind)
	if err != nil {
		return badf("%v", err)
	}
	enc, err := interchange.ParseEncoding(o.Encoding)
	if err != nil {
		return badf("%v", err)
	}
	lang := o.Lang
	switch lang {
	case "", interchange.LangKorean:
		lang = interchange.LangKorean
	case interchange.LangEnglish:
	default:
		return badf("lang %q: want ko or en", o.Lang)
	}
	latest := n.latest
	// Two passes over the store: the columns some document holds, then
	// the rows.
	if err := each(func(s *protocol.Signed) error {
		if ok, err := latest(s); err != nil || !ok {
			return err
		}
		cols.Add(s.Record.Body)
		return nil
	}); err != nil {
		return err
	}
	tw, err := interchange.NewTableWriter(w, o.Format, cols, lang, enc)
	if err != nil {
		return err
	}
	if err := each(func(s *protocol.Signed) error {
		if ok, err := latest(s); err != nil || !ok {
			return err
		}
		return tw.Write(s.Record.Body)
	}); err != nil {
		return err
	}
	return tw.Close()
}

// latest reports whether no record supersedes s: a record of the same
// kind by the same author in the same channel that links it
// "supersedes". Anyone else's link does not hide it.
func (n *Node) latest(s *protocol.Signed) (bool, error) {
	bl, err := n.store.Backlinks(s.CID)
	if err != nil {
		return false, err
	}
	for _, b := range bl {
		if b.Rel != "supersedes" {
			continue
		}
		by, err := n.store.Get(b.From)
		if err != nil {
			continue
		}
		if by.Record.Author == s.Record.Author && by.Record.Kind == s.Record.Kind && by.ChannelOf() == s.ChannelOf() {
			return false, nil
		}
	}
	return true, nil
}

// exportEPCIS writes the channel's despatch-advices, receipts, production
// reports, inspections and stock counts (the latest version of each) as
// one EPCIS 2.0 document, each event carrying its record's CID.
func (n *Node) exportEPCIS(ch cid.Cid, o api.ExportOptions, w io.Writer, each func(func(*protocol.Signed) error) error) error {
	if o.Kind != "" && !slices.Contains(interchange.EPCISKinds, o.Kind) {
		return badf("kind %q has no EPCIS event; these do: %v", o.Kind, interchange.EPCISKinds)
	}
	base := o.IDBase
	if base == "" {
		base = "https://id.invalid/" + n.self.String()
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return badf("id base %q: want an http(s) URL such as https://id.example.co.kr", base)
	}
	ew, err := interchange.NewEPCISWriter(w, time.Now())
	if err != nil {
		return err
	}
	if err := each(func(s *protocol.Signed) error {
		if !slices.Contains(interchange.EPCISKinds, s.Record.Kind) {
			return nil
		}
		if ok, err := n.latest(s); err != nil || !ok {
			return err
		}
		rec := interchange.EPCISRecord{CID: s.CID, Kind: s.Record.Kind, Body: s.Record.Body}
		if rec.Kind == "receipt" {
			rec.Orders = n.receiptOrders(ch, s)
		}
		ev, ok, err := interchange.EPCISEvent(rec, base)
		if err != nil || !ok {
			return err
		}
		return ew.Write(ev)
	}); err != nil {
		return err
	}
	return ew.Close()
}

// maxLinkedRecords bounds what --with-links gathers.
const maxLinkedRecords = 10_000

// exportCAR writes an evidence bundle (evidence.Builder): the records
// selected, the governance records that make their authors members of
// their channels, and, with WithLinks, everything the record links to.
func (n *Node) exportCAR(ctx context.Context, ch cid.Cid, o api.ExportOptions, w io.Writer, each func(func(*protocol.Signed) error) error) error {
	b := evidence.NewBuilder()
	channels := map[cid.Cid]bool{ch: true}
	skipped := map[cid.Cid]bool{}
	if o.CID != "" {
		c, err := cid.Decode(o.CID)
		if err != nil {
			return badf("cid %q is not a CID: %v", o.CID, err)
		}
		s, err := n.store.Get(c)
		if err != nil {
			return err
		}
		if s.ChannelOf() != ch {
			return badf("record %s is in channel %s, not %s", c, s.ChannelOf(), ch)
		}
		b.Add(s, true)
		if o.WithLinks {
			queue := []*protocol.Signed{s}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, l := range cur.Record.Links {
					if l.Rel == protocol.RelAfter {
						continue // governance order, not evidence
					}
					t, err := n.store.Get(l.CID)
					if err != nil {
						continue // a record this node does not hold
					}
					if t.ChannelOf() != ch && !o.CrossChannel {
						// Another channel's records, and its members,
						// go to whoever gets the bundle only when the
						// operator says so.
						skipped[t.ChannelOf()] = true
						continue
					}
					before := b.Len()
					if !b.Has(t.CID) && before >= maxLinkedRecords {
						return badf("record %s links to more than %d records; bundle fewer", c, maxLinkedRecords)
					}
					b.Add(t, false)
					if b.Len() > before {
						channels[t.ChannelOf()] = true
						queue = append(queue, t)
					}
				}
			}
		}
	} else if err := each(func(s *protocol.Signed) error {
		b.Add(s, true)
		return nil
	}); err != nil {
		return err
	}
	for c := range channels {
		if err := n.addGovernance(b, c); err != nil {
			return err
		}
	}
	if len(skipped) > 0 {
		n.log.Info("evidence bundle: links into other channels left out (cross_channel adds them)", "record", o.CID, "channels", len(skipped))
	}
	return b.Write(w, time.Now(), func(c cid.Cid) ([]byte, error) {
		s, err := n.store.Get(c)
		if err != nil {
			return nil, err
		}
		return s.Envelope, nil
	})
}

// addGovernance adds channel ch's genesis and membership changes.
func (n *Node) addGovernance(b *evidence.Builder, ch cid.Cid) error {
	g, err := n.store.Get(ch)
	if err != nil {
		return fmt.Errorf("the genesis of channel %s: %w", ch, err)
	}
	b.Add(g, false)
	// The membership changes, and the members' key logs, which say which
	// key signs for whom.
	for _, kind := range []string{protocol.KindChannelMembers, protocol.KindKeys} {
		err := n.store.ScanKind(kind, func(s *protocol.Signed) error {
			if s.ChannelOf() == ch {
				b.Add(s, false)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// receiptOrders finds the orders a receipt's despatch-advice fulfils: the
// despatch it links "receives", or the one imported here under its
// number.
func (n *Node) receiptOrders(ch cid.Cid, s *protocol.Signed) []string {
	var desadv *protocol.Signed
	for _, l := range s.Record.Links {
		if l.Rel == "receives" {
			if d, err := n.store.Get(l.CID); err == nil {
				desadv = d
				break
			}
		}
	}
	if desadv == nil {
		ref, _ := s.Record.Body["despatchRef"].(map[string]any)
		id, _ := ref["docId"].(string)
		var st importState
		if b, err := n.store.GetMeta(metaImport, importKey(ch, "despatch-advice", id)); err == nil && json.Unmarshal(b, &st) == nil {
			if c, err := cid.Decode(st.CID); err == nil {
				desadv, _ = n.store.Get(c)
			}
		}
	}
	if desadv == nil {
		return nil
	}
	var orders []string
	lines, _ := desadv.Record.Body["lines"].([]any)
	for _, l := range lines {
		ref, _ := l.(map[string]any)["orderRef"].(map[string]any)
		if id, _ := ref["docId"].(string); id != "" && !slices.Contains(orders, id) {
			orders = append(orders, id)
		}
	}
	return orders
}

// parseSince reads a time given as RFC 3339 or as a date (midnight in
// zone).
func parseSince(s string, zone *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, zone); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want a time such as 2026-11-20 or 2026-11-20T09:00:00+09:00")
}
