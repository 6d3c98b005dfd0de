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
	// ErrNotAdmin: a membership change not signed by an admin.
	ErrNotAdmin = errors.New("only a channel admin may change membership")
)

// governance is the node's view of its channels' membership, derived from
// the genesis and channel-members records it holds. The derivation does not
// depend on the order the records arrived in, so every node holding the same
// records has the same view: admins and members only grow through changes
// signed by admins, and a removal, which names the last valid seq, always wins.
type governance struct {
	self     peer.ID
	mu       sync.RWMutex
	chans    map[cid.Cid]*channelState
	profiles map[peer.ID]profile
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
	admins      map[peer.ID]bool
	members     map[peer.ID]bool // includes admins and removed members
	removed     map[peer.ID]uint64
}

func loadGovernance(s *store.Store, self peer.ID) (*governance, error) {
	g := &governance{self: self, chans: map[cid.Cid]*channelState{}, profiles: map[peer.ID]profile{}}
	for _, kind := range []string{protocol.KindChannelGenesis, protocol.KindChannelMembers, protocol.KindProfile} {
		cursor := ""
		for {
			recs, next, err := s.ByKind(kind, 1000, cursor)
			if err != nil {
				return nil, fmt.Errorf("load governance: %w", err)
			}
			for _, r := range recs {
				g.apply(r)
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return g, nil
}

// check decides whether the author of s may publish it in its channel.
func (g *governance) check(s *protocol.Signed) error {
	r := s.Record
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
	if st == nil {
		return fmt.Errorf("%w %s", ErrUnknownChannel, r.Channel)
	}
	if !st.members[r.Author] {
		return fmt.Errorf("%w: %s in %s", ErrNotMember, r.Author, st.name)
	}
	if last, ok := st.removed[r.Author]; ok && r.Seq > last {
		return fmt.Errorf("%w: %s after seq %d", ErrRemoved, r.Author, last)
	}
	if r.Kind == protocol.KindChannelMembers && !st.admins[r.Author] {
		return fmt.Errorf("%w: %s is not an admin of %s", ErrNotAdmin, r.Author, st.name)
	}
	return nil
}

// apply folds a stored governance record into the view. Other kinds are
// ignored. It reports whether the channel's membership changed.
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
		st.recompute()
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
		st.recompute()
		return true
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
// changes, to a fixpoint.
func (st *channelState) recompute() {
	st.admins, st.members, st.removed = map[peer.ID]bool{}, map[peer.ID]bool{}, map[peer.ID]uint64{}
	if st.genesis == nil {
		return
	}
	for _, p := range peersOf(st.genesis.Record.Body["admins"]) {
		st.admins[p], st.members[p] = true, true
	}
	for _, p := range peersOf(st.genesis.Record.Body["members"]) {
		st.members[p] = true
	}
	valid := func(c *protocol.Signed) bool {
		a := c.Record.Author
		last, removed := st.removed[a]
		return st.admins[a] && (!removed || c.Record.Seq <= last)
	}
	for changed := true; changed; {
		changed = false
		for _, c := range st.changes {
			if !valid(c) {
				continue
			}
			for _, p := range peersOf(c.Record.Body["add"]) {
				if !st.members[p] {
					st.members[p], changed = true, true
				}
			}
			for _, p := range peersOf(c.Record.Body["admins"]) {
				if !st.admins[p] {
					st.admins[p], st.members[p], changed = true, true, true
				}
			}
			rm, _ := c.Record.Body["remove"].([]any)
			for _, e := range rm {
				m, _ := e.(map[string]any)
				ids := peersOf([]any{m["member"]})
				last, ok := m["lastSeq"].(int64)
				if len(ids) != 1 || !ok || last < 0 {
					continue
				}
				if cur, seen := st.removed[ids[0]]; !seen || uint64(last) < cur {
					st.removed[ids[0]], changed = uint64(last), true
				}
			}
		}
	}
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

// active reports whether p is a member of st and not removed.
func (st *channelState) active(p peer.ID) bool {
	_, removed := st.removed[p]
	return st.genesis != nil && st.members[p] && !removed
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
	governance        []*protocol.Signed
	hasGenesis        bool
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
		if _, gone := st.removed[p]; !gone {
			s.members = append(s.members, p)
		}
	}
	slices.Sort(s.admins)
	slices.Sort(s.members)
	s.governance = append(s.governance, st.genesis)
	for _, c := range st.changes {
		s.governance = append(s.governance, c)
	}
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
