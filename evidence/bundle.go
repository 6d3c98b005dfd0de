// Package evidence makes and checks evidence bundles: CARv1 files holding
// signed records, the governance records that make their authors members
// of their channels, and a root that lists them, which anyone can check
// offline with nothing else (docs/design.md, "Evidence bundles").
package evidence

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// rootType names a bundle's root block.
const rootType = "sangsaeng-evidence"

// Builder collects the records of a bundle.
type Builder struct {
	entries []entry
	seen    map[cid.Cid]int
}

type entry struct {
	record, envelope cid.Cid
	selected         bool
}

// NewBuilder starts a bundle.
func NewBuilder() *Builder { return &Builder{seen: map[cid.Cid]int{}} }

// Add adds a record's envelope: a record asked for when selected, or one
// that vouches for it (its channel's governance, a record it links to).
// Adding a record twice keeps it once, selected if either was.
func (b *Builder) Add(s *protocol.Signed, selected bool) {
	if i, ok := b.seen[s.CID]; ok {
		b.entries[i].selected = b.entries[i].selected || selected
		return
	}
	b.seen[s.CID] = len(b.entries)
	b.entries = append(b.entries, entry{record: s.CID, envelope: rawCID(s.Envelope), selected: selected})
}

// Has reports whether record c was added.
func (b *Builder) Has(c cid.Cid) bool {
	_, ok := b.seen[c]
	return ok
}

// Len is the number of records added.
func (b *Builder) Len() int { return len(b.entries) }

// Write writes the bundle to w: the root, then each envelope, which
// envelope returns by record CID (the store keeps them; the builder keeps
// only CIDs).
func (b *Builder) Write(w io.Writer, created time.Time, envelope func(cid.Cid) ([]byte, error)) error {
	var selected, entries []any
	for _, e := range b.entries {
		if e.selected {
			selected = append(selected, e.record)
		}
		entries = append(entries, map[string]any{"record": e.record, "envelope": e.envelope})
	}
	root, err := protocol.EncodeValue(map[string]any{
		"type": rootType, "version": int64(1), "created": created.UnixMilli(),
		"selected": orEmpty(selected), "entries": orEmpty(entries),
	})
	if err != nil {
		return err
	}
	if len(root) > maxSection {
		return fmt.Errorf("a bundle of %d records is too large for its root; select fewer", len(b.entries))
	}
	rc := protocol.Sum(root)
	cw, err := newCARWriter(w, rc)
	if err != nil {
		return err
	}
	if err := cw.put(rc, root); err != nil {
		return err
	}
	for _, e := range b.entries {
		env, err := envelope(e.record)
		if err != nil {
			return fmt.Errorf("record %s: %w", e.record, err)
		}
		if !rawCID(env).Equals(e.envelope) {
			return fmt.Errorf("record %s: its envelope changed while the bundle was written", e.record)
		}
		if err := cw.put(e.envelope, env); err != nil {
			return err
		}
	}
	return nil
}

func orEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

// Checked is a record a bundle holds, as verified.
type Checked struct {
	CID      cid.Cid
	Kind     string
	Author   peer.ID
	Channel  cid.Cid
	Seq      uint64
	Time     time.Time
	Selected bool
}

// Channel is a channel of a bundle's records, as its governance records
// in the bundle make it: whoever checks a bundle trusts it as far as they
// recognise these peers.
type Channel struct {
	ID      cid.Cid
	Name    string
	Admins  []peer.ID
	Members []peer.ID
	Changes int // membership changes in the bundle
}

// Report is what Verify found: every record holds.
type Report struct {
	Created  time.Time
	Blocks   int
	Records  []Checked // in the root's order
	Selected int
	Channels []Channel
}

// Verify checks the bundle in r with nothing else: every block's hash,
// the root, every record's signature and CID, that each record's author
// is a member of its channel by the governance records in the bundle (or
// a removed member within the seqs its removal left valid), and that the
// records of one author in one channel sit in one chain (no two for one
// seq, each one's prev the one before it). The first problem found is the
// error, saying where it is.
func Verify(r io.Reader) (*Report, error) {
	cr, err := newCARReader(r)
	if err != nil {
		return nil, err
	}
	if len(cr.roots) != 1 {
		return nil, fmt.Errorf("the CAR header names %d roots: a bundle has one", len(cr.roots))
	}
	blocks := map[cid.Cid]block{}
	for {
		b, err := cr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, dup := blocks[b.cid]; !dup {
			blocks[b.cid] = b
		}
	}
	rootBlock, ok := blocks[cr.roots[0]]
	if !ok {
		return nil, fmt.Errorf("the root %s is not in the bundle", cr.roots[0])
	}
	root, err := parseRoot(rootBlock)
	if err != nil {
		return nil, err
	}
	rep := &Report{Created: time.UnixMilli(root.created), Blocks: len(blocks)}
	recs := make([]*protocol.Signed, 0, len(root.entries))
	byCID := map[cid.Cid]*protocol.Signed{}
	listed := map[cid.Cid]bool{}
	for i, e := range root.entries {
		// Each record and envelope once: a root that repeats one would
		// have it opened again and again.
		if listed[e.record] || listed[e.envelope] {
			return nil, fmt.Errorf("entry %d: record %s or its envelope is listed twice in the root", i, e.record)
		}
		listed[e.record], listed[e.envelope] = true, true
	}
	for i, e := range root.entries {
		b, ok := blocks[e.envelope]
		if !ok {
			return nil, fmt.Errorf("entry %d: the envelope %s of record %s is not in the bundle", i, e.envelope, e.record)
		}
		// Any key may have signed it; the author's key log in the bundle
		// says whether that key signs for the author (below).
		s, err := protocol.OpenDelegated(b.data)
		if err != nil {
			return nil, fmt.Errorf("record %s (block at byte %d): %w", e.record, b.offset, err)
		}
		if err := protocol.ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
			return nil, fmt.Errorf("record %s (block at byte %d): %w", e.record, b.offset, err)
		}
		if !s.CID.Equals(e.record) {
			return nil, fmt.Errorf("entry %d: the envelope at byte %d is record %s, not %s as the root says", i, b.offset, s.CID, e.record)
		}
		recs = append(recs, s)
		byCID[s.CID] = s
	}
	selected := map[cid.Cid]bool{}
	for _, c := range root.selected {
		if byCID[c] == nil {
			return nil, fmt.Errorf("selected record %s is not among the bundle's entries", c)
		}
		if selected[c] {
			return nil, fmt.Errorf("selected record %s is listed twice", c)
		}
		selected[c] = true
	}
	// Membership, channel by channel, from the governance records held.
	type chanGov struct {
		genesis *protocol.Signed
		changes []*protocol.Signed
	}
	govs := map[cid.Cid]*chanGov{}
	gov := func(ch cid.Cid) *chanGov {
		g := govs[ch]
		if g == nil {
			g = &chanGov{}
			govs[ch] = g
		}
		return g
	}
	for _, s := range recs {
		switch s.Record.Kind {
		case protocol.KindChannelGenesis:
			gov(s.ChannelOf()).genesis = s
		case protocol.KindChannelMembers:
			g := gov(s.ChannelOf())
			g.changes = append(g.changes, s)
		}
	}
	// Keys: each author's longest key log among its keys records; two
	// that do not extend one another are a forked key log.
	keylogs := map[peer.ID]*protocol.KeyLog{}
	for _, s := range recs {
		if s.Record.Kind != protocol.KindKeys {
			continue
		}
		l, err := protocol.KeyLogOf(s.Record.Author, s.Record.Body)
		if err != nil {
			return nil, fmt.Errorf("keys record %s: %w", s.CID, err)
		}
		old := keylogs[s.Record.Author]
		switch {
		case l.Extends(old):
			keylogs[s.Record.Author] = l
		case !old.Extends(l):
			return nil, fmt.Errorf("keys record %s carries a key log of %s that forks from another in the bundle", s.CID, s.Record.Author)
		}
	}
	for _, s := range recs {
		log := keylogs[s.Record.Author]
		if log == nil {
			log = protocol.NewKeyLog(s.Record.Author)
		}
		if err := log.Check(s.Signer, s.ChannelOf(), s.Record.Seq); err != nil {
			return nil, fmt.Errorf("record %s: %w (by the key logs in the bundle)", s.CID, err)
		}
	}
	views := map[cid.Cid]protocol.View{}
	for _, s := range recs {
		ch := s.ChannelOf()
		if s.Record.Kind == protocol.KindChannelGenesis {
			continue
		}
		g := govs[ch]
		if g == nil || g.genesis == nil {
			return nil, fmt.Errorf("record %s is in channel %s, whose genesis is not in the bundle: nothing shows who its members are", s.CID, ch)
		}
		v, ok := views[ch]
		if !ok {
			v = protocol.Membership(g.genesis, g.changes)
			if len(v.Pending) > 0 {
				// A change that follows one the bundle lacks counts for
				// nothing: a bundle could drop a removal's predecessor
				// to undo the removal.
				return nil, fmt.Errorf("membership change %s of channel %s follows a change the bundle does not hold: the channel's governance in the bundle is incomplete", v.Pending[0].CID, ch)
			}
			views[ch] = v
		}
		if s.Record.Kind == protocol.KindChannelMembers {
			if selected[s.CID] && !v.Applied[s.CID] {
				return nil, fmt.Errorf("membership change %s of channel %s was signed by %s, who was not an admin at its point: it counts for nothing", s.CID, ch, s.Record.Author)
			}
			continue
		}
		author := s.Record.Author
		if last, removed := v.Removed[author]; removed {
			if s.Record.Seq > last {
				return nil, fmt.Errorf("record %s: its author %s was removed from channel %s after seq %d, and this is seq %d", s.CID, author, ch, last, s.Record.Seq)
			}
		} else if !v.IsMember(author) {
			return nil, fmt.Errorf("record %s: its author %s is not a member of channel %s by the governance records in the bundle", s.CID, author, ch)
		}
	}
	// Chain position: one author's records in one channel form one chain.
	type key struct {
		ch     cid.Cid
		author peer.ID
	}
	chains := map[key][]*protocol.Signed{}
	for _, s := range recs {
		k := key{s.ChannelOf(), s.Record.Author}
		chains[k] = append(chains[k], s)
	}
	for k, l := range chains {
		slices.SortFunc(l, func(a, b *protocol.Signed) int {
			switch {
			case a.Record.Seq < b.Record.Seq:
				return -1
			case a.Record.Seq > b.Record.Seq:
				return 1
			}
			return 0
		})
		for i, s := range l {
			if s.Record.Seq == 1 && s.Record.Prev.Defined() {
				return nil, fmt.Errorf("record %s is seq 1 of %s in %s and names a prev", s.CID, k.author, k.ch)
			}
			if s.Record.Seq > 1 && !s.Record.Prev.Defined() {
				return nil, fmt.Errorf("record %s is seq %d of %s in %s and names no prev", s.CID, s.Record.Seq, k.author, k.ch)
			}
			if i == 0 {
				continue
			}
			p := l[i-1]
			if p.Record.Seq == s.Record.Seq {
				return nil, fmt.Errorf("records %s and %s are both seq %d of %s in channel %s: the author signed two records for one place", p.CID, s.CID, s.Record.Seq, k.author, k.ch)
			}
			if p.Record.Seq+1 == s.Record.Seq && !s.Record.Prev.Equals(p.CID) {
				return nil, fmt.Errorf("record %s (seq %d) names prev %s, but the bundle's seq %d of its author is %s", s.CID, s.Record.Seq, s.Record.Prev, p.Record.Seq, p.CID)
			}
		}
	}
	for _, s := range recs {
		c := Checked{CID: s.CID, Kind: s.Record.Kind, Author: s.Record.Author, Channel: s.ChannelOf(), Seq: s.Record.Seq,
			Time: time.UnixMilli(s.Record.Time), Selected: selected[s.CID]}
		if c.Selected {
			rep.Selected++
		}
		rep.Records = append(rep.Records, c)
	}
	for ch, g := range govs {
		if g.genesis == nil {
			continue // only governance of a channel whose genesis is missing: nothing depends on it
		}
		v, ok := views[ch]
		if !ok {
			if v = protocol.Membership(g.genesis, g.changes); len(v.Pending) > 0 {
				return nil, fmt.Errorf("membership change %s of channel %s follows a change the bundle does not hold: the channel's governance in the bundle is incomplete", v.Pending[0].CID, ch)
			}
		}
		name, _ := g.genesis.Record.Body["name"].(string)
		rep.Channels = append(rep.Channels, Channel{ID: ch, Name: name, Admins: v.Admins, Members: v.Members, Changes: len(g.changes)})
	}
	slices.SortFunc(rep.Channels, func(a, b Channel) int { return strings.Compare(a.Name+a.ID.String(), b.Name+b.ID.String()) })
	return rep, nil
}

type rootEntry struct{ record, envelope cid.Cid }

type parsedRoot struct {
	created  int64
	selected []cid.Cid
	entries  []rootEntry
}

func parseRoot(b block) (parsedRoot, error) {
	bad := func(what string) (parsedRoot, error) {
		return parsedRoot{}, fmt.Errorf("the root block at byte %d is not a bundle's root: %s", b.offset, what)
	}
	if b.cid.Prefix().Codec != cid.DagCBOR {
		return bad("not DAG-CBOR")
	}
	v, err := protocol.DecodeValue(b.data)
	if err != nil {
		return bad(err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok || m["type"] != rootType || m["version"] != int64(1) {
		return bad(fmt.Sprintf("want type %q, version 1", rootType))
	}
	var r parsedRoot
	r.created, _ = m["created"].(int64)
	sel, _ := m["selected"].([]any)
	for _, s := range sel {
		c, ok := s.(cid.Cid)
		if !ok {
			return bad("selected holds something other than CIDs")
		}
		r.selected = append(r.selected, c)
	}
	ents, _ := m["entries"].([]any)
	if len(ents) == 0 {
		return bad("no entries")
	}
	for _, e := range ents {
		em, _ := e.(map[string]any)
		rc, ok1 := em["record"].(cid.Cid)
		ec, ok2 := em["envelope"].(cid.Cid)
		if !ok1 || !ok2 {
			return bad("an entry without record and envelope CIDs")
		}
		r.entries = append(r.entries, rootEntry{rc, ec})
	}
	return r, nil
}
