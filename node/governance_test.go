package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/protocol/govgen"
)

func newTestGovernance(self peer.ID) *governance {
	return &governance{self: self, chans: map[cid.Cid]*channelState{}, profiles: map[peer.ID]profile{}}
}

// TestGovernanceOneView: the same governance set, applied one record at a
// time in many random orders, with duplicates, and with the genesis anywhere
// among the changes, gives the node one view, and the view of the pure
// function: admins, members, removals, what memberOf says of every company,
// and the causal order the records are sent in.
func TestGovernanceOneView(t *testing.T) {
	seeds, orders := 20, 30
	if testing.Short() {
		seeds, orders = 6, 20
	}
	var total govgen.Stats
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		set, err := govgen.Generate(rng, 7, 120)
		if err != nil {
			t.Fatal(err)
		}
		total.Adds += set.Stats.Adds
		total.Removes += set.Stats.Removes
		total.AdminRemoves += set.Stats.AdminRemoves
		total.AdminLists += set.Stats.AdminLists
		total.ReAdds += set.Stats.ReAdds
		total.Concurrent += set.Stats.Concurrent
		want := protocol.Membership(set.Genesis, set.Changes)
		ch := set.Genesis.CID
		var wantOrder []cid.Cid
		for _, s := range want.Order {
			wantOrder = append(wantOrder, s.CID)
		}
		for o := range orders {
			recs := append([]*protocol.Signed{set.Genesis}, set.Changes...)
			for range rng.IntN(len(recs)) {
				recs = append(recs, recs[rng.IntN(len(recs))])
			}
			rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
			g := newTestGovernance(set.Peers[0])
			for _, s := range recs {
				g.apply(s)
			}
			snap, ok := g.channel(ch)
			if !ok {
				t.Fatalf("seed %d order %d: no channel", seed, o)
			}
			var order []cid.Cid
			for _, s := range snap.governance {
				order = append(order, s.CID)
			}
			switch {
			case !slices.Equal(snap.admins, want.Admins):
				t.Fatalf("seed %d order %d: admins %v, want %v", seed, o, snap.admins, want.Admins)
			case !slices.Equal(snap.members, want.Members):
				t.Fatalf("seed %d order %d: members %v, want %v", seed, o, snap.members, want.Members)
			case fmt.Sprint(snap.removed) != fmt.Sprint(want.Removed):
				t.Fatalf("seed %d order %d: removed %v, want %v", seed, o, snap.removed, want.Removed)
			case !slices.Equal(order, wantOrder):
				t.Fatalf("seed %d order %d: governance sent in another order", seed, o)
			}
			for _, p := range set.Peers {
				if g.memberOf(ch, p) != want.IsMember(p) {
					t.Fatalf("seed %d order %d: memberOf(%s) = %v", seed, o, p, !want.IsMember(p))
				}
				if _, gone := want.Removed[p]; gone && g.memberOf(ch, p) {
					t.Fatalf("seed %d order %d: removed %s is a member", seed, o, p)
				}
			}
		}
		// Sent in that order, each change checks out on arrival at a node
		// that holds only what came before it, as on a joining node.
		g := newTestGovernance(set.Peers[0])
		for _, s := range want.Order {
			err := g.check(s)
			switch {
			case err == nil, errors.Is(err, ErrNotAdmin), errors.Is(err, ErrRemoved):
				// A change that never counted may be refused; it changes
				// nothing.
				if err != nil && want.Applied[s.CID] {
					t.Fatalf("seed %d: a change that counts is refused in causal order: %v", seed, err)
				}
			default:
				t.Fatalf("seed %d: change %s refused in causal order: %v", seed, s.CID, err)
			}
			g.apply(s)
		}
	}
	t.Logf("over %d sets: %+v", seeds, total)
	if total.AdminRemoves == 0 || total.AdminLists == 0 || total.ReAdds == 0 || total.Concurrent == 0 {
		t.Fatalf("the sets do not cover every rule: %+v", total)
	}
}

// TestGovernanceCheck: the rules a node applies to a record on arrival.
func TestGovernanceCheck(t *testing.T) {
	keys := []int{0, 1, 2, 3}
	var ids []peer.ID
	for _, i := range keys {
		id, err := peer.IDFromPrivateKey(govgen.Key(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	seqs := map[int]uint64{}
	prevs := map[int]cid.Cid{}
	seal := func(i int, r *protocol.Record) *protocol.Signed {
		seqs[i]++
		r.Author, r.Seq, r.Prev, r.Time = ids[i], seqs[i], prevs[i], 1
		s, err := protocol.Seal(r, govgen.Key(i))
		if err != nil {
			t.Fatal(err)
		}
		prevs[i] = s.CID
		return s
	}
	gen := seal(0, &protocol.Record{Kind: protocol.KindChannelGenesis, Body: map[string]any{
		"name": "c", "admins": []any{ids[0].String()}, "members": []any{ids[0].String(), ids[1].String()},
	}})
	ch := gen.CID
	change := func(i int, body map[string]any, after ...cid.Cid) *protocol.Signed {
		var links []protocol.Link
		for _, a := range after {
			links = append(links, protocol.Link{Rel: protocol.RelAfter, CID: a})
		}
		return seal(i, &protocol.Record{Channel: ch, Kind: protocol.KindChannelMembers, Links: links, Body: body})
	}
	note := func(i int) *protocol.Signed {
		return seal(i, &protocol.Record{Channel: ch, Kind: "note", Body: map[string]any{"text": "hi"}})
	}
	g := newTestGovernance(ids[0])
	if err := g.check(note(1)); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("before the genesis: %v", err)
	}
	g.apply(gen)
	promote := change(0, map[string]any{"admins": []any{ids[0].String(), ids[1].String()}}, ch)
	byNew := change(1, map[string]any{"add": []any{ids[2].String()}}, promote.CID)
	// byNew follows promote, which the node lacks: pending, not refused.
	if err := g.check(byNew); !errors.Is(err, ErrPendingChange) {
		t.Fatalf("a change ahead of the node: %v, want ErrPendingChange", err)
	}
	// The same change, linked after the genesis only, is by a non-admin.
	if err := g.check(change(1, map[string]any{"add": []any{ids[2].String()}}, ch)); !errors.Is(err, ErrNotAdmin) {
		t.Fatalf("a change by a member: %v, want ErrNotAdmin", err)
	}
	for _, s := range []*protocol.Signed{promote, byNew} {
		if err := g.check(s); err != nil {
			t.Fatal(err)
		}
		g.apply(s)
	}
	if !g.memberOf(ch, ids[2]) {
		t.Fatal("the change by the new admin did not count")
	}
	if err := g.check(note(3)); !errors.Is(err, ErrNotMember) {
		t.Fatalf("a record by a stranger: %v", err)
	}
	// 0 removes 1 with 1's last record so far as its last valid seq: that
	// record stays valid, the next is refused, and so is a change of 1's,
	// which no longer counts.
	n3 := note(1)
	last := n3.Record.Seq
	rm := change(0, map[string]any{"remove": []any{map[string]any{"member": ids[1].String(), "lastSeq": int64(last)}}}, byNew.CID)
	g.apply(rm)
	if err := g.check(n3); err != nil {
		t.Fatalf("a removed member's record before its removal: %v", err)
	}
	if err := g.check(note(1)); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed member's record after its removal: %v", err)
	}
	if err := g.check(change(1, map[string]any{"add": []any{ids[3].String()}}, rm.CID)); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed admin's change: %v", err)
	}
	if g.memberOf(ch, ids[1]) {
		t.Fatal("a removed member is a member")
	}
	snap, _ := g.channel(ch)
	if snap.removed[ids[1]] != last {
		t.Fatalf("removed %v", snap.removed)
	}
	// The links the node puts on its next change: after its heads.
	links := g.afterLinks(ch, nil)
	if len(links) != 1 || links[0] != (protocol.Link{Rel: protocol.RelAfter, CID: rm.CID}) {
		t.Fatalf("after links %v, want the removal", links)
	}
}

// TestRemovalIsFinal: an admin cannot add back a member it removed, and is
// told why; the member stays out.
func TestRemovalIsFinal(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "final")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.RemoveMember(ctx, ch, b.ID()); err != nil {
		t.Fatal(err)
	}
	_, err := a.Invite(ctx, ch, b.ID())
	if !errors.Is(err, ErrRemovedFinal) || !strings.Contains(err.Error(), "found a new channel") {
		t.Fatalf("re-invite of a removed member: %v", err)
	}
	t.Log(err)
	if err := a.AddMember(ctx, ch, b.ID()); !errors.Is(err, ErrRemovedFinal) {
		t.Fatalf("re-add of a removed member: %v", err)
	}
	if a.gov.memberOf(ch, b.ID()) {
		t.Fatal("the removed member is back")
	}
	snap, _ := a.gov.channel(ch)
	for _, s := range snap.governance[1:] {
		if !protocol.HasAfter(s.Record) {
			t.Fatalf("change %s has no after link", s.CID)
		}
	}
}

// TestReorderNotPenalised: a member forwards, over gossip, a membership
// change before the change it follows, and a record of a new member before
// the change that added it. The node ignores both without holding them
// against the forwarder, accepts all three once they come in causal order,
// and penalises the forwarder only for a record of a stranger forwarded
// after a sync with it should have taught the node of every member.
func TestReorderNotPenalised(t *testing.T) {
	n := startNode(t, "N")
	var ids []peer.ID
	for i := range 4 {
		id, err := peer.IDFromPrivateKey(govgen.Key(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	seal := func(i int, r *protocol.Record) *protocol.Signed {
		r.Author, r.Time = ids[i], time.Now().UnixMilli()
		s, err := protocol.Seal(r, govgen.Key(i))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	gen := seal(0, &protocol.Record{Seq: 1, Kind: protocol.KindChannelGenesis, Body: map[string]any{
		"name": "reorder", "admins": []any{ids[0].String()}, "members": []any{ids[0].String(), n.ID().String()},
	}})
	ch := gen.CID
	if _, err := n.ingest(ch, gen.Envelope, ids[0], opGossip); err != nil {
		t.Fatal(err)
	}
	after := func(c cid.Cid) []protocol.Link { return []protocol.Link{{Rel: protocol.RelAfter, CID: c}} }
	promote := seal(0, &protocol.Record{Channel: ch, Seq: 2, Prev: gen.CID, Kind: protocol.KindChannelMembers, Links: after(ch),
		Body: map[string]any{"admins": []any{ids[0].String(), ids[1].String()}}})
	add := seal(1, &protocol.Record{Channel: ch, Seq: 1, Kind: protocol.KindChannelMembers, Links: after(promote.CID),
		Body: map[string]any{"add": []any{ids[2].String()}}})
	note := func(i int, seq uint64, prev cid.Cid) *protocol.Signed {
		return seal(i, &protocol.Record{Channel: ch, Seq: seq, Prev: prev, Kind: "note", Body: map[string]any{"text": "hello"}})
	}
	byNew := note(2, 1, cid.Undef)
	topic := Topic(ch)
	validate := n.validator(ch)
	forwarder := ids[0]
	deliver := func(s *protocol.Signed, want pubsub.ValidationResult) {
		t.Helper()
		m := &pubsub.Message{Message: &pb.Message{Data: s.Envelope, Topic: &topic}, ReceivedFrom: forwarder}
		if got := validate(context.Background(), forwarder, m); got != want {
			t.Fatalf("record %s (%s): validation %v, want %v", s.CID, s.Record.Kind, got, want)
		}
	}
	deliver(add, pubsub.ValidationIgnore)
	deliver(byNew, pubsub.ValidationIgnore)
	if p := n.penalty.get(forwarder); p != 0 {
		t.Fatalf("honest reordering cost the forwarder %v", p)
	}
	for _, s := range []*protocol.Signed{promote, add, byNew} {
		deliver(s, pubsub.ValidationAccept)
	}
	if !n.gov.memberOf(ch, ids[2]) || n.penalty.get(forwarder) != 0 {
		t.Fatalf("member %v, penalty %v", n.gov.memberOf(ch, ids[2]), n.penalty.get(forwarder))
	}
	// A stranger's record: nothing before a sync with the forwarder has run
	// since the first doubt, one point after.
	stranger := note(3, 1, cid.Undef)
	deliver(stranger, pubsub.ValidationIgnore)
	if p := n.penalty.get(forwarder); p != 0 {
		t.Fatalf("penalty %v before a sync could explain the stranger's record", p)
	}
	n.sync.mu.Lock()
	n.sync.status[syncJob{forwarder, ch}] = &syncStatus{last: time.Now().Add(time.Second)}
	n.sync.mu.Unlock()
	deliver(note(3, 2, stranger.CID), pubsub.ValidationIgnore)
	if p := n.penalty.get(forwarder); p < 0.9 {
		t.Fatalf("penalty %v for a stranger's record after a sync, want about 1", p)
	}
}

// TestGovernanceAcrossNodes: two admins on two nodes edit a channel's
// membership concurrently (an admins list and adds while apart); a third
// node joins through one of them and a fourth, which joined through the
// other while they were apart, syncs; all four end with one
// view, and nobody penalised anybody.
func TestGovernanceAcrossNodes(t *testing.T) {
	a, b, c, d := startNode(t, "A"), startNode(t, "B"), startNode(t, "C"), startNode(t, "D")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch := link(t, a, b, "two-admins")
	if _, err := a.Publish(ctx, ch, protocol.KindChannelMembers, map[string]any{"admins": []any{a.ID().String(), b.ID().String()}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to be an admin at B", 10*time.Second, func() bool {
		snap, _ := b.gov.channel(ch)
		return slices.Contains(snap.admins, b.ID())
	})
	// Apart: A and B cannot reach each other while each edits.
	for _, p := range [][2]*Node{{a, b}, {b, a}} {
		p[0].gater.deny.Store(p[1].ID(), true)
		_ = p[0].host.Network().ClosePeer(p[1].ID())
	}
	codeD, err := a.Invite(ctx, ch, d.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Join(ctx, codeD); err != nil { // D learns the rest by sync
		t.Fatal(err)
	}
	// B's list keeps A an admin: a concurrent list that dropped A would
	// undo A's add or not, by the CIDs (the later in the linearisation
	// wins), and D's membership with it.
	if _, err := b.Publish(ctx, ch, protocol.KindChannelMembers, map[string]any{"admins": []any{a.ID().String(), b.ID().String(), c.ID().String()}}, nil); err != nil {
		t.Fatal(err)
	}
	code, err := b.Invite(ctx, ch, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*Node{{a, b}, {b, a}} {
		p[0].gater.deny.Delete(p[1].ID())
	}
	if err := a.host.Connect(ctx, addrInfo(b)); err != nil {
		t.Fatal(err)
	}
	views := func(n *Node) string {
		snap, ok := n.gov.channel(ch)
		if !ok {
			return "none"
		}
		var order []cid.Cid
		for _, s := range snap.governance {
			order = append(order, s.CID)
		}
		return fmt.Sprint(snap.admins, snap.members, snap.removed, order)
	}
	waitFor(t, "A and B to agree", 20*time.Second, func() bool { return views(a) == views(b) && len(mustSnap(a, ch).governance) == 5 })
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	d.sync.schedule(a.ID(), ch)
	deadline := time.Now().Add(20 * time.Second)
	for views(c) != views(a) || views(d) != views(a) {
		if time.Now().After(deadline) {
			t.Fatalf("views differ:\nA %s\nC %s\nD %s", views(a), views(c), views(d))
		}
		time.Sleep(20 * time.Millisecond)
	}
	snap := mustSnap(a, ch)
	t.Logf("admins %v members %v", snap.admins, snap.members)
	for _, p := range []peer.ID{a.ID(), b.ID(), c.ID(), d.ID()} {
		if !slices.Contains(snap.members, p) {
			t.Fatalf("%s is not a member", p)
		}
	}
	if len(snap.admins) != 3 {
		t.Fatalf("admins %v, want A, B and C", snap.admins)
	}
	if p := a.penalty.get(b.ID()) + b.penalty.get(a.ID()) + c.penalty.get(b.ID()) + d.penalty.get(a.ID()); p != 0 {
		t.Fatalf("honest nodes penalised one another: %v", p)
	}
}

func mustSnap(n *Node, ch cid.Cid) snapshot {
	s, _ := n.gov.channel(ch)
	return s
}
