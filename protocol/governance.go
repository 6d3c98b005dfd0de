package protocol

import (
	"cmp"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// RelAfter is the rel of a link from a channel-members record to a
// governance record of the same channel (the genesis or another
// channel-members record) that its author held when signing it: the
// channel's governance heads at the author's node. These links order
// membership changes causally; see Membership.
const RelAfter = "after"

// MaxAfterLinks is the most "after" links Heads returns for a new change.
const MaxAfterLinks = 64

// View is a channel's membership as its governance records decide it.
type View struct {
	// Admins are the channel's admins, sorted. Every admin is a member.
	Admins []peer.ID
	// Members are the active members, admins included, sorted.
	Members []peer.ID
	// Removed maps each removed member to the last seq of theirs that
	// stays valid in the channel. A removed member is never a member again.
	Removed map[peer.ID]uint64
	// Order is the genesis followed by every change that could be placed,
	// in the linearisation the fold used: a causal order, the order in
	// which to send the records.
	Order []*Signed
	// Applied holds the changes that took effect; the others in Order were
	// signed by an author who was not an admin at their point, or by a
	// removed admin after its last valid seq.
	Applied map[cid.Cid]bool
	// Pending are the changes that link "after" a record the set lacks,
	// directly or through another pending change, sorted by CID. They have
	// no effect until their predecessors arrive.
	Pending []*Signed
	// Heads are the CIDs a new change should link "after": the records of
	// Order that no other record of Order links "after" (the genesis when
	// Order holds nothing else), at most MaxAfterLinks of them, the latest
	// in Order kept. Through them a new change follows every record placed.
	Heads []cid.Cid
}

// IsAdmin reports whether p is an admin in v.
func (v View) IsAdmin(p peer.ID) bool {
	_, ok := slices.BinarySearch(v.Admins, p)
	return ok
}

// IsMember reports whether p is an active member in v.
func (v View) IsMember(p peer.ID) bool {
	_, ok := slices.BinarySearch(v.Members, p)
	return ok
}

// govNode is one change in the fold's graph.
type govNode struct {
	s       *Signed
	key     string     // CID bytes: the tie-break
	links   []*govNode // "after" links to changes of the set
	preds   []*govNode // links and implicit edges
	succs   []*govNode
	pending bool
}

// Membership derives a channel's membership from its genesis and a set of
// channel-members records. The result is a function of the set: the order
// of changes, duplicates, and records of other kinds or channels (ignored)
// make no difference. The rules, in docs/design.md ("Channels and membership"):
//
//   - Order. A change follows the records it links "after", its author's
//     changes of lower seq, and, when it removes a member M with lastSeq L,
//     M's changes of seq L or less (the remover held them). A change that
//     links a record the set lacks is pending, and so is one that links a
//     pending change. The others are placed one at a time: of the changes
//     whose predecessors are all placed, the one with the lowest CID (as
//     bytes) whose author is an admin at that point, or, when no such
//     change is ready, the lowest CID. If implicit edges form a cycle
//     (only a lying author can make one), the lowest CID whose links are
//     placed goes next.
//   - Fold. From the genesis (its admins, and its members and admins as
//     members), each change counts only if its author is an admin at its
//     point. A change applies its "admins" first, which replaces the
//     list of admins (less removed members; a list left empty is ignored)
//     and makes each admin a member; then "add", which adds members
//     (removed ones excepted: removal is final); then "remove", which
//     removes each member, admin or not, keeping the lowest lastSeq given.
//   - Removed admins. A removed member's changes with seq above its lastSeq
//     never count, even those placed before the removal: when the fold
//     counted one, it runs again with those changes excluded, until it
//     excludes no new one. Exclusions only grow, so this ends.
//   - Concurrent changes (neither follows the other) take effect in the
//     order above: of two "admins" replacements, the later wins.
func Membership(genesis *Signed, changes []*Signed) View {
	v := View{Removed: map[peer.ID]uint64{}, Applied: map[cid.Cid]bool{}}
	if genesis == nil || genesis.Record == nil || genesis.Record.Kind != KindChannelGenesis {
		seen := map[cid.Cid]bool{}
		for _, c := range changes {
			if c != nil && c.Record != nil && c.Record.Kind == KindChannelMembers && !seen[c.CID] {
				seen[c.CID] = true
				v.Pending = append(v.Pending, c)
			}
		}
		slices.SortFunc(v.Pending, func(a, b *Signed) int { return cmp.Compare(a.CID.KeyString(), b.CID.KeyString()) })
		return v
	}
	ch := genesis.CID
	byCID := map[cid.Cid]*govNode{}
	var nodes []*govNode
	for _, c := range changes {
		if c == nil || c.Record == nil || c.Record.Kind != KindChannelMembers || c.Record.Channel != ch || byCID[c.CID] != nil {
			continue
		}
		nd := &govNode{s: c, key: c.CID.KeyString()}
		byCID[c.CID] = nd
		nodes = append(nodes, nd)
	}
	slices.SortFunc(nodes, func(a, b *govNode) int { return cmp.Compare(a.key, b.key) })

	// Pending: a link to a record the set lacks, directly or not. Links
	// name CIDs, so they cannot form a cycle; the walk guards anyway.
	missing := map[*govNode]bool{}
	for _, nd := range nodes {
		for _, l := range nd.s.Record.Links {
			if l.Rel != RelAfter || l.CID == ch {
				continue
			}
			if p := byCID[l.CID]; p != nil {
				nd.links = append(nd.links, p)
			} else {
				missing[nd] = true
			}
		}
	}
	state := map[*govNode]uint8{} // 1 visiting, 2 done
	var visit func(nd *govNode) bool
	visit = func(nd *govNode) bool {
		switch state[nd] {
		case 1:
			return true // a cycle of hashes cannot exist; treat it as pending
		case 2:
			return nd.pending
		}
		state[nd] = 1
		p := missing[nd]
		for _, l := range nd.links {
			if visit(l) {
				p = true
			}
		}
		nd.pending, state[nd] = p, 2
		return p
	}
	var live []*govNode
	for _, nd := range nodes {
		if visit(nd) {
			v.Pending = append(v.Pending, nd.s)
		} else {
			live = append(live, nd)
		}
	}

	// Edges among the placed-to-be: links, each author's seq order, and
	// removals after the removed member's changes they cover.
	byAuthor := map[peer.ID][]*govNode{}
	for _, nd := range live {
		nd.preds = append(nd.preds, nd.links...)
		byAuthor[nd.s.Record.Author] = append(byAuthor[nd.s.Record.Author], nd)
	}
	for _, l := range byAuthor {
		slices.SortFunc(l, func(a, b *govNode) int {
			return cmp.Or(cmp.Compare(a.s.Record.Seq, b.s.Record.Seq), cmp.Compare(a.key, b.key))
		})
		for i := 1; i < len(l); i++ {
			l[i].preds = append(l[i].preds, l[i-1])
		}
	}
	for _, nd := range live {
		for _, rm := range removals(nd.s.Record.Body) {
			l := byAuthor[rm.member]
			i, _ := slices.BinarySearchFunc(l, rm.lastSeq, func(e *govNode, seq uint64) int {
				if e.s.Record.Seq <= seq {
					return -1
				}
				return 1
			})
			if i > 0 && l[i-1] != nd {
				nd.preds = append(nd.preds, l[i-1])
			}
		}
	}
	for _, nd := range live {
		for _, p := range nd.preds {
			p.succs = append(p.succs, nd)
		}
	}

	excluded := map[*govNode]bool{}
	var f fold
	for {
		f = foldOnce(genesis, live, excluded)
		grew := false
		for _, nd := range f.order {
			if !f.applied[nd] {
				continue
			}
			if last, ok := f.removed[nd.s.Record.Author]; ok && nd.s.Record.Seq > last {
				excluded[nd], grew = true, true
			}
		}
		if !grew {
			break
		}
	}

	for p := range f.admins {
		v.Admins = append(v.Admins, p)
	}
	for p := range f.members {
		v.Members = append(v.Members, p)
	}
	slices.Sort(v.Admins)
	slices.Sort(v.Members)
	v.Removed = f.removed
	v.Order = append(v.Order, genesis)
	followed := map[*govNode]bool{}
	for _, nd := range f.order {
		v.Order = append(v.Order, nd.s)
		if f.applied[nd] {
			v.Applied[nd.s.CID] = true
		}
		for _, p := range nd.links {
			followed[p] = true
		}
	}
	if len(f.order) == 0 {
		v.Heads = []cid.Cid{genesis.CID}
	}
	for _, nd := range f.order {
		if !followed[nd] {
			v.Heads = append(v.Heads, nd.s.CID)
		}
	}
	if len(v.Heads) > MaxAfterLinks {
		v.Heads = v.Heads[len(v.Heads)-MaxAfterLinks:]
	}
	return v
}

// fold is the outcome of one pass of the fold.
type fold struct {
	admins, members map[peer.ID]bool
	removed         map[peer.ID]uint64
	order           []*govNode
	applied         map[*govNode]bool
}

// foldOnce linearises live and folds it from the genesis, with the changes
// in excluded counting for nothing.
func foldOnce(genesis *Signed, live []*govNode, excluded map[*govNode]bool) fold {
	f := fold{admins: map[peer.ID]bool{}, members: map[peer.ID]bool{}, removed: map[peer.ID]uint64{}, applied: map[*govNode]bool{}}
	for _, p := range peersOf(genesis.Record.Body["admins"]) {
		f.admins[p], f.members[p] = true, true
	}
	for _, p := range peersOf(genesis.Record.Body["members"]) {
		f.members[p] = true
	}
	indeg := make(map[*govNode]int, len(live))
	placed := make(map[*govNode]bool, len(live))
	var ready []*govNode // sorted by key
	for _, nd := range live {
		indeg[nd] = len(nd.preds)
		if indeg[nd] == 0 {
			ready = append(ready, nd) // live is sorted
		}
	}
	counts := func(nd *govNode) bool {
		r := nd.s.Record
		if excluded[nd] || !f.admins[r.Author] {
			return false
		}
		last, removed := f.removed[r.Author]
		return !removed || r.Seq <= last
	}
	for len(f.order) < len(live) {
		var pick *govNode
		if len(ready) == 0 {
			// A cycle through implicit edges: go by links alone.
			for _, nd := range live {
				if placed[nd] {
					continue
				}
				ok := true
				for _, l := range nd.links {
					if !placed[l] {
						ok = false
						break
					}
				}
				if ok {
					pick = nd
					break
				}
			}
			if pick == nil { // cannot happen: links form no cycle
				break
			}
		} else {
			i := slices.IndexFunc(ready, counts)
			if i < 0 {
				i = 0
			}
			pick = ready[i]
			ready = slices.Delete(ready, i, i+1)
		}
		placed[pick] = true
		f.order = append(f.order, pick)
		if counts(pick) {
			f.applied[pick] = true
			f.apply(pick.s.Record.Body)
		}
		for _, s := range pick.succs {
			indeg[s]--
			if indeg[s] == 0 && !placed[s] {
				i, _ := slices.BinarySearchFunc(ready, s.key, func(e *govNode, k string) int { return cmp.Compare(e.key, k) })
				ready = slices.Insert(ready, i, s)
			}
		}
	}
	return f
}

// apply folds one counted change's body into f.
func (f *fold) apply(body map[string]any) {
	if l, ok := body["admins"]; ok {
		var admins []peer.ID
		for _, p := range peersOf(l) {
			if _, gone := f.removed[p]; !gone {
				admins = append(admins, p)
			}
		}
		if len(admins) > 0 {
			f.admins = map[peer.ID]bool{}
			for _, p := range admins {
				f.admins[p], f.members[p] = true, true
			}
		}
	}
	for _, p := range peersOf(body["add"]) {
		if _, gone := f.removed[p]; !gone {
			f.members[p] = true
		}
	}
	for _, rm := range removals(body) {
		if cur, seen := f.removed[rm.member]; !seen || rm.lastSeq < cur {
			f.removed[rm.member] = rm.lastSeq
		}
		delete(f.admins, rm.member)
		delete(f.members, rm.member)
	}
}

// removal is one entry of a change's "remove".
type removal struct {
	member  peer.ID
	lastSeq uint64
}

// removals reads a change's "remove" list, skipping malformed entries.
func removals(body map[string]any) []removal {
	l, _ := body["remove"].([]any)
	var out []removal
	for _, e := range l {
		m, _ := e.(map[string]any)
		s, _ := m["member"].(string)
		p, err := peer.Decode(s)
		last, ok := m["lastSeq"].(int64)
		if err != nil || !ok || last < 0 {
			continue
		}
		out = append(out, removal{p, uint64(last)})
	}
	return out
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

// CausalPast returns the changes c links "after", directly or through
// other changes, as lookup finds them, and the CIDs lookup does not find.
// Links to the genesis (the channel's ID) are neither. lookup returns nil
// for a record it does not hold.
func CausalPast(c *Signed, lookup func(cid.Cid) *Signed) (past []*Signed, missing []cid.Cid) {
	ch := c.Record.Channel
	seen := map[cid.Cid]bool{c.CID: true}
	stack := []*Signed{c}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, l := range s.Record.Links {
			if l.Rel != RelAfter || l.CID == ch || seen[l.CID] {
				continue
			}
			seen[l.CID] = true
			p := lookup(l.CID)
			if p == nil || p.Record == nil {
				missing = append(missing, l.CID)
				continue
			}
			past = append(past, p)
			stack = append(stack, p)
		}
	}
	return past, missing
}

// HasAfter reports whether r carries an "after" link: a change written
// since membership changes are ordered causally.
func HasAfter(r *Record) bool {
	return slices.ContainsFunc(r.Links, func(l Link) bool { return l.Rel == RelAfter })
}
