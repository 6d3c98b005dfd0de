package node

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// Governance errors: why a record is refused before its body is looked at.
var (
	// ErrUnknownChannel: the node holds no genesis for the record's channel.
	ErrUnknownChannel = errors.New("unknown channel")
	// ErrNotMember: the author is not a member of the channel.
	ErrNotMember = errors.New("author is not a member of the channel")
	// ErrRemoved: the author was removed from the channel before this seq.
	ErrRemoved = errors.New("author was removed from the channel")
	// ErrRemovedFinal: an attempt to add back a member removed from the
	// channel. Removal is final in a channel.
	ErrRemovedFinal = errors.New("removal is final")
	// ErrNotAdmin: a membership change not signed by an admin.
	ErrNotAdmin = errors.New("only a channel admin may change membership")
)

// ErrPendingChange: a membership change that follows ("after" links)
// governance records the node does not hold yet, so that its author's right
// to make it cannot be decided. It is neither stored nor held against the
// sender; a sync with the sender brings the records it follows.
var ErrPendingChange = errors.New("membership change follows governance records this node lacks")

// governance is the node's view of its channels' membership, derived from
// the genesis and channel-members records it holds by protocol.Membership:
// a function of the set of records, so every node holding the same records
// has the same view, whatever order they arrived in.
type governance struct {
	self     peer.ID
	mu       sync.RWMutex
	chans    map[cid.Cid]*channelState
	profiles map[peer.ID]profile
	// keylogs: each company's key log, the longest this node verified
	// (protocol.KeyLog), from the keys records it holds or was sent.
	keylogs map[peer.ID]*protocol.KeyLog
	// head is the store's contiguous head of an author in a channel.
	head    func(ch cid.Cid, author peer.ID) uint64
	loading bool // loadGovernance folds each channel once, at the end
}

type profile struct {
	name, brn string
	time      int64
}

// channelState is one channel's membership.
type channelState struct {
	id          cid.Cid
	name        string
	description string
	genesis     *protocol.Signed
	changes     map[cid.Cid]*protocol.Signed
	view        protocol.View
	admins      map[peer.ID]bool
	members     map[peer.ID]bool // active members, admins included
	removed     map[peer.ID]uint64
	keys        map[peer.ID]*protocol.Signed // each author's newest keys record here
}

func loadGovernance(s *store.Store, self peer.ID) (*governance, error) {
	g := &governance{self: self, chans: map[cid.Cid]*channelState{}, profiles: map[peer.ID]profile{}, keylogs: map[peer.ID]*protocol.KeyLog{}, loading: true,
		head: func(ch cid.Cid, author peer.ID) uint64 { h, _ := s.Head(ch, author); return h }}
	for _, kind := range []string{protocol.KindKeys, protocol.KindChannelGenesis, protocol.KindChannelMembers, protocol.KindProfile} {
		if err := s.ScanKind(kind, func(r *protocol.Signed) error { g.apply(r); return nil }); err != nil {
			return nil, fmt.Errorf("load governance: %w", err)
		}
	}
	g.loading = false
	for _, st := range g.chans {
		st.recompute()
	}
	return g, nil
}

// check decides whether the author of s may publish it in its channel.
// A membership change counts in the causal past its "after" links name: its
// author must be an admin there, so that every node decides alike whatever
// else it holds (a change without such links, written before changes were
// ordered, is checked against the node's current view).
func (g *governance) check(s *protocol.Signed) error {
	r := s.Record
	if r.Kind == protocol.KindDisclosure {
		// The link a trace follows is the record the body carries.
		var to []cid.Cid
		for _, l := range r.Links {
			if l.Rel == RelDiscloses {
				to = append(to, l.CID)
			}
		}
		if want, _ := r.Body["cid"].(string); len(to) != 1 || to[0].String() != want {
			return fmt.Errorf("%w: a disclosure links exactly one record with rel %s, the one its body carries (%s)", protocol.ErrMalformed, RelDiscloses, want)
		}
	}
	if err := g.checkSigner(s); err != nil {
		return err
	}
	if r.Kind == protocol.KindChannelGenesis {
		admins := peersOf(r.Body["admins"])
		if !slices.Contains(admins, r.Author) {
			return fmt.Errorf("%w: a channel genesis must list its author among the admins", ErrNotAdmin)
		}
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[r.Channel]
	if st == nil || st.genesis == nil {
		return fmt.Errorf("%w %s", ErrUnknownChannel, r.Channel)
	}
	if r.Kind == protocol.KindChannelMembers {
		return st.checkChange(s)
	}
	if last, ok := st.removed[r.Author]; ok {
		if r.Seq > last {
			return fmt.Errorf("%w: %s after seq %d", ErrRemoved, r.Author, last)
		}
		return nil
	}
	if !st.members[r.Author] {
		return fmt.Errorf("%w: %s in %s", ErrNotMember, r.Author, st.name)
	}
	return nil
}

// ErrKeyLogFork: a keys record whose key log is neither the one this node
// holds nor an extension of it: two key logs signed for one company.
var ErrKeyLogFork = protocol.ErrKeyLogForked

// checkSigner decides whether the key that signed s signs for its author at
// its place in the chain, by the author's key log. It changes nothing: a
// keys record's log counts for the record itself, and becomes the author's
// once the record is stored (apply). A signer the log does not name is
// pending only where the node lacks some of the author's records before
// this one in the channel, which may hold the keys record that adds it (a
// company publishes its log in a channel before it signs there with a new
// key); else it is refused, held against the sender as a forged author was
// before key logs.
func (g *governance) checkSigner(s *protocol.Signed) error {
	r := s.Record
	signer := s.Signer
	if signer == "" && len(s.Envelope) > 0 {
		signer, _ = protocol.SignerOf(s.Envelope)
	}
	if signer == "" {
		signer = r.Author
	}
	if r.Kind == protocol.KindKeyEvent {
		return fmt.Errorf("%w: a key-event belongs in its author's key log; a keys record carries it into a channel", protocol.ErrMalformed)
	}
	g.mu.RLock()
	log := g.keylogs[r.Author]
	g.mu.RUnlock()
	if r.Kind == protocol.KindKeys {
		carried, err := protocol.ExtendKeyLog(log, r.Author, r.Body)
		if errors.Is(err, protocol.ErrKeyLogForked) {
			return fmt.Errorf("%w: %s's keys record %s: %w", ErrKeyLogFork, r.Author, s.CID, err)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", protocol.ErrMalformed, err)
		}
		log = carried
	}
	if log == nil {
		log = protocol.NewKeyLog(r.Author)
	}
	err := log.Check(signer, s.ChannelOf(), r.Seq)
	if _, known := log.Key(signer); err != nil && !known && g.head != nil && g.head(s.ChannelOf(), r.Author)+1 < r.Seq {
		return fmt.Errorf("%w: %w", ErrPendingChange, err)
	}
	return err
}

// learnKeyLog keeps l as its author's key log when it extends the one held.
func (g *governance) learnKeyLog(l *protocol.KeyLog) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keepKeyLog(l)
}

// keepKeyLog is learnKeyLog for a caller that holds g.mu.
func (g *governance) keepKeyLog(l *protocol.KeyLog) {
	if old := g.keylogs[l.Author]; old == nil || (l.Extends(old) && len(l.Entries) > len(old.Entries)) {
		g.keylogs[l.Author] = l
	}
}

// keyLog returns p's key log: the one held, or that of a company that has
// changed no key.
func (g *governance) keyLog(p peer.ID) *protocol.KeyLog {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if l := g.keylogs[p]; l != nil {
		return l
	}
	return protocol.NewKeyLog(p)
}

// checkChange decides whether membership change s counts.
func (st *channelState) checkChange(s *protocol.Signed) error {
	r := s.Record
	if !protocol.HasAfter(r) {
		if last, ok := st.removed[r.Author]; ok && r.Seq > last {
			return fmt.Errorf("%w: %s after seq %d", ErrRemoved, r.Author, last)
		}
		if !st.admins[r.Author] {
			return fmt.Errorf("%w: %s is not an admin of %s", ErrNotAdmin, r.Author, st.name)
		}
		return nil
	}
	c := s.CID
	if !c.Defined() { // a record being signed
		b, err := r.Encode()
		if err != nil {
			return err
		}
		c = protocol.Sum(b)
		s = &protocol.Signed{Record: r, Bytes: b, CID: c}
	}
	past, missing := protocol.CausalPast(s, func(c cid.Cid) *protocol.Signed { return st.changes[c] })
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s follows %d record(s) of %s not held here, such as %s", ErrPendingChange, c, len(missing), st.name, missing[0])
	}
	v := protocol.Membership(st.genesis, append(past, s))
	if v.Applied[c] {
		return nil
	}
	if last, ok := v.Removed[r.Author]; ok && r.Seq > last {
		return fmt.Errorf("%w: %s after seq %d", ErrRemoved, r.Author, last)
	}
	return fmt.Errorf("%w: %s is not an admin of %s in the records this change follows", ErrNotAdmin, r.Author, st.name)
}

// apply folds a stored governance record into the view. Other kinds are
// ignored. It reports whether the record was new to the view.
func (g *governance) apply(s *protocol.Signed) bool {
	r := s.Record
	g.mu.Lock()
	defer g.mu.Unlock()
	switch r.Kind {
	case protocol.KindChannelGenesis:
		st := g.chans[s.CID]
		if st == nil {
			st = &channelState{id: s.CID, changes: map[cid.Cid]*protocol.Signed{}}
			g.chans[s.CID] = st
		}
		if st.genesis != nil {
			return false
		}
		st.genesis = s
		st.name, _ = r.Body["name"].(string)
		st.description, _ = r.Body["description"].(string)
		if !g.loading {
			st.recompute()
		}
		return true
	case protocol.KindChannelMembers:
		st := g.chans[r.Channel]
		if st == nil { // membership changes can arrive before the genesis
			st = &channelState{id: r.Channel, changes: map[cid.Cid]*protocol.Signed{}}
			g.chans[r.Channel] = st
		}
		if st.changes[s.CID] != nil {
			return false
		}
		st.changes[s.CID] = s
		if !g.loading {
			st.recompute()
		}
		return true
	case protocol.KindKeys:
		st := g.chans[r.Channel]
		if st == nil {
			st = &channelState{id: r.Channel, changes: map[cid.Cid]*protocol.Signed{}}
			g.chans[r.Channel] = st
		}
		if st.keys == nil {
			st.keys = map[peer.ID]*protocol.Signed{}
		}
		if old := st.keys[r.Author]; old == nil || old.Record.Seq < r.Seq {
			st.keys[r.Author] = s
		}
		if l, err := protocol.ExtendKeyLog(g.keylogs[r.Author], r.Author, r.Body); err == nil {
			g.keepKeyLog(l)
		}
	case protocol.KindProfile:
		p := g.profiles[r.Author]
		if r.Time >= p.time {
			name, _ := r.Body["name"].(string)
			brn, _ := r.Body["brn"].(string)
			g.profiles[r.Author] = profile{name: name, brn: brn, time: r.Time}
		}
	}
	return false
}

// recompute derives admins, members and removals from the genesis and the
// changes.
func (st *channelState) recompute() {
	changes := make([]*protocol.Signed, 0, len(st.changes))
	for _, c := range st.changes {
		changes = append(changes, c)
	}
	st.view = protocol.Membership(st.genesis, changes)
	st.admins, st.members = map[peer.ID]bool{}, map[peer.ID]bool{}
	for _, p := range st.view.Admins {
		st.admins[p] = true
	}
	for _, p := range st.view.Members {
		st.members[p] = true
	}
	st.removed = st.view.Removed
}

// peersOf reads a list of peer ID strings, skipping anything else.
func peersOf(v any) []peer.ID {
	l, _ := v.([]any)
	var out []peer.ID
	for _, e := range l {
		s, _ := e.(string)
		if p, err := peer.Decode(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// afterLinks returns links with an "after" link to each of ch's governance
// heads added, for a membership change the node is about to sign.
func (g *governance) afterLinks(ch cid.Cid, links []protocol.Link) []protocol.Link {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	if st == nil || st.genesis == nil {
		return links
	}
	out := slices.Clone(links)
	for _, h := range st.view.Heads {
		if !slices.Contains(out, protocol.Link{Rel: protocol.RelAfter, CID: h}) {
			out = append(out, protocol.Link{Rel: protocol.RelAfter, CID: h})
		}
	}
	return out
}

// removedAt reports whether p was removed from ch, and its last valid seq.
func (g *governance) removedAt(ch cid.Cid, p peer.ID) (uint64, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	if st == nil {
		return 0, false
	}
	last, ok := st.removed[p]
	return last, ok
}

// active reports whether p is a member of st and not removed.
func (st *channelState) active(p peer.ID) bool {
	return st.genesis != nil && st.members[p]
}

// removedFrom returns the peers removed from ch.
func (g *governance) removedFrom(ch cid.Cid) []peer.ID {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	if st == nil {
		return nil
	}
	return slices.Collect(maps.Keys(st.removed))
}

// joined returns the channels the node itself is an active member of.
func (g *governance) joined() []cid.Cid {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []cid.Cid
	for id, st := range g.chans {
		if st.active(g.self) {
			out = append(out, id)
		}
	}
	return out
}

// known returns every channel whose genesis the node holds.
func (g *governance) known() []cid.Cid {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []cid.Cid
	for id, st := range g.chans {
		if st.genesis != nil {
			out = append(out, id)
		}
	}
	return out
}

// keysHeld is how many key-log entries the newest keys record of author in
// ch carries.
func (g *governance) keysHeld(ch cid.Cid, author peer.ID) int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	if st == nil || st.keys[author] == nil {
		return 0
	}
	l, _ := st.keys[author].Record.Body["log"].([]any)
	return len(l)
}

// isJoined reports whether the node is an active member of ch.
func (g *governance) isJoined(ch cid.Cid) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	return st != nil && st.active(g.self)
}

// memberOf reports whether p is an active member of ch.
func (g *governance) memberOf(ch cid.Cid, p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	return st != nil && st.active(p)
}

// shared returns the channels that both the node and p are active members of.
func (g *governance) shared(p peer.ID) []cid.Cid {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []cid.Cid
	for id, st := range g.chans {
		if st.active(g.self) && st.active(p) {
			out = append(out, id)
		}
	}
	return out
}

// isPartner reports whether p shares at least one channel with the node.
func (g *governance) isPartner(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, st := range g.chans {
		if st.active(g.self) && st.active(p) {
			return true
		}
	}
	return false
}

// name returns the display name of p from its newest profile.
func (g *governance) name(p peer.ID) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.profiles[p].name
}

// snapshot is a copy of a channel's state for reading outside the lock.
type snapshot struct {
	id                cid.Cid
	name, description string
	admins, members   []peer.ID
	removed           map[peer.ID]uint64
	// governance is the genesis and the changes in causal order (the
	// linearisation of protocol.Membership), then the pending changes.
	governance []*protocol.Signed
	hasGenesis bool
}

// channel returns a snapshot of ch, or false when the node knows no genesis.
func (g *governance) channel(ch cid.Cid) (snapshot, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := g.chans[ch]
	if st == nil || st.genesis == nil {
		return snapshot{}, false
	}
	s := snapshot{id: st.id, name: st.name, description: st.description, removed: maps.Clone(st.removed), hasGenesis: true}
	for p := range st.admins {
		s.admins = append(s.admins, p)
	}
	for p := range st.members {
		s.members = append(s.members, p)
	}
	slices.Sort(s.admins)
	slices.Sort(s.members)
	// The members' key logs first (a genesis or change signed by a
	// rotated key needs its author's), then the membership in causal
	// order, as records are sent: the pending ones last.
	for _, p := range slices.Sorted(maps.Keys(st.keys)) {
		s.governance = append(s.governance, st.keys[p])
	}
	s.governance = append(s.governance, st.view.Order...)
	s.governance = append(s.governance, st.view.Pending...)
	return s, true
}

// byName returns the joined channels whose name is name.
func (g *governance) byName(name string) []cid.Cid {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []cid.Cid
	for id, st := range g.chans {
		if st.name == name && st.active(g.self) {
			out = append(out, id)
		}
	}
	return out
}
