package protocol_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/protocol/govgen"
)

// govKit builds a channel's governance records by hand.
type govKit struct {
	t    *testing.T
	keys []crypto.PrivKey
	ids  []peer.ID
	gen  *protocol.Signed
	seq  []uint64
	prev []cid.Cid
}

// newKit founds a channel by company 0 with the given admins and members
// (company indexes).
func newKit(t *testing.T, admins, members []int) *govKit {
	k := &govKit{t: t}
	for i := range 8 {
		key := govgen.Key(i)
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		k.keys, k.ids = append(k.keys, key), append(k.ids, id)
	}
	k.seq, k.prev = make([]uint64, 8), make([]cid.Cid, 8)
	s, err := protocol.Seal(&protocol.Record{
		Author: k.ids[0], Seq: 1, Time: 1, Kind: protocol.KindChannelGenesis,
		Body: map[string]any{"name": "kit", "admins": k.list(admins...), "members": k.list(members...)},
	}, k.keys[0])
	if err != nil {
		t.Fatal(err)
	}
	k.gen, k.seq[0], k.prev[0] = s, 1, s.CID
	return k
}

func (k *govKit) list(is ...int) []any {
	out := []any{}
	for _, i := range is {
		out = append(out, k.ids[i].String())
	}
	return out
}

// skip moves company i's seq on by n business records.
func (k *govKit) skip(i int, n uint64) {
	k.seq[i] += n
	k.prev[i] = protocol.Sum(fmt.Appendf(nil, "business %d %d", i, k.seq[i]))
}

// change signs company i's next record, a change linked after the records
// given (none: a change of before causal order).
func (k *govKit) change(i int, body map[string]any, after ...*protocol.Signed) *protocol.Signed {
	var links []protocol.Link
	for _, a := range after {
		links = append(links, protocol.Link{Rel: protocol.RelAfter, CID: a.CID})
	}
	k.seq[i]++
	s, err := protocol.Seal(&protocol.Record{
		Channel: k.gen.CID, Author: k.ids[i], Seq: k.seq[i], Prev: k.prev[i], Time: int64(k.seq[i]),
		Kind: protocol.KindChannelMembers, Links: links, Body: body,
	}, k.keys[i])
	if err != nil {
		k.t.Fatal(err)
	}
	k.prev[i] = s.CID
	return s
}

func (k *govKit) add(is ...int) map[string]any    { return map[string]any{"add": k.list(is...)} }
func (k *govKit) admins(is ...int) map[string]any { return map[string]any{"admins": k.list(is...)} }
func (k *govKit) remove(i int, last uint64) map[string]any {
	return map[string]any{"remove": []any{map[string]any{"member": k.ids[i].String(), "lastSeq": int64(last)}}}
}

// peers returns the IDs of companies is, sorted.
func (k *govKit) peers(is ...int) []peer.ID {
	var out []peer.ID
	for _, i := range is {
		out = append(out, k.ids[i])
	}
	slices.Sort(out)
	return out
}

// check computes the view of changes in every order of a few shuffles and
// checks that each gives the same view, with the admins and members given.
func (k *govKit) check(changes []*protocol.Signed, admins, members []int) protocol.View {
	k.t.Helper()
	v := protocol.Membership(k.gen, changes)
	if !slices.Equal(v.Admins, k.peers(admins...)) {
		k.t.Errorf("admins %v, want %v", k.names(v.Admins), k.names(k.peers(admins...)))
	}
	if !slices.Equal(v.Members, k.peers(members...)) {
		k.t.Errorf("members %v, want %v", k.names(v.Members), k.names(k.peers(members...)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		c := slices.Clone(changes)
		rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
		if d := diff(v, protocol.Membership(k.gen, c)); d != "" {
			k.t.Fatalf("another order gives another view: %s", d)
		}
	}
	return v
}

func (k *govKit) names(ps []peer.ID) []int {
	var out []int
	for _, p := range ps {
		out = append(out, slices.Index(k.ids, p))
	}
	return out
}

// diff describes how two views differ, or returns "".
func diff(a, b protocol.View) string {
	cids := func(l []*protocol.Signed) []cid.Cid {
		var out []cid.Cid
		for _, s := range l {
			out = append(out, s.CID)
		}
		return out
	}
	switch {
	case !slices.Equal(a.Admins, b.Admins):
		return fmt.Sprintf("admins %v / %v", a.Admins, b.Admins)
	case !slices.Equal(a.Members, b.Members):
		return fmt.Sprintf("members %v / %v", a.Members, b.Members)
	case fmt.Sprint(a.Removed) != fmt.Sprint(b.Removed):
		return fmt.Sprintf("removed %v / %v", a.Removed, b.Removed)
	case !slices.Equal(cids(a.Order), cids(b.Order)):
		return fmt.Sprintf("order %v / %v", cids(a.Order), cids(b.Order))
	case !slices.Equal(cids(a.Pending), cids(b.Pending)):
		return fmt.Sprintf("pending %v / %v", cids(a.Pending), cids(b.Pending))
	case fmt.Sprint(a.Applied) != fmt.Sprint(b.Applied):
		return fmt.Sprintf("applied %v / %v", a.Applied, b.Applied)
	case !slices.Equal(a.Heads, b.Heads):
		return fmt.Sprintf("heads %v / %v", a.Heads, b.Heads)
	}
	return ""
}

func TestMembershipGenesis(t *testing.T) {
	k := newKit(t, []int{0}, []int{0, 1})
	v := k.check(nil, []int{0}, []int{0, 1})
	if len(v.Order) != 1 || v.Order[0] != k.gen || !slices.Equal(v.Heads, []cid.Cid{k.gen.CID}) {
		t.Fatalf("order %v heads %v: want the genesis alone", v.Order, v.Heads)
	}
	// Admins are members even when the genesis does not list them so.
	k = newKit(t, []int{0, 2}, []int{1})
	k.check(nil, []int{0, 2}, []int{0, 1, 2})
}

func TestMembershipAddByAdminOnly(t *testing.T) {
	k := newKit(t, []int{0}, []int{0, 1})
	byAdmin := k.change(0, k.add(2), k.gen)
	byMember := k.change(1, k.add(3), byAdmin)
	v := k.check([]*protocol.Signed{byAdmin, byMember}, []int{0}, []int{0, 1, 2})
	if !v.Applied[byAdmin.CID] || v.Applied[byMember.CID] {
		t.Fatalf("applied %v: want the admin's change only", v.Applied)
	}
}

func TestMembershipAdminsReplace(t *testing.T) {
	k := newKit(t, []int{0}, []int{0, 1, 2})
	hand := k.change(0, k.admins(1), k.gen) // 0 hands over to 1 and stays a member
	late := k.change(0, k.add(3), hand)     // no longer an admin
	byNew := k.change(1, k.add(4), late)
	v := k.check([]*protocol.Signed{hand, late, byNew}, []int{1}, []int{0, 1, 2, 4})
	if v.Applied[late.CID] {
		t.Fatal("a change by a former admin counted")
	}
	// An admins list of removed members only is ignored.
	k = newKit(t, []int{0}, []int{0, 1})
	rm := k.change(0, k.remove(1, 0), k.gen)
	bad := k.change(0, k.admins(1), rm)
	k.check([]*protocol.Signed{rm, bad}, []int{0}, []int{0})
}

func TestMembershipRemovalIsFinal(t *testing.T) {
	k := newKit(t, []int{0}, []int{0, 1, 2})
	rm := k.change(0, k.remove(1, 4), k.gen)
	readd := k.change(0, k.add(1), rm)
	promote := k.change(0, k.admins(0, 1, 2), readd)
	v := k.check([]*protocol.Signed{rm, readd, promote}, []int{0, 2}, []int{0, 2})
	if v.Removed[k.ids[1]] != 4 {
		t.Fatalf("removed %v: want company 1 with last seq 4", v.Removed)
	}
	// Two removals: the lower last seq holds.
	again := k.change(0, k.remove(1, 2), promote)
	v = k.check([]*protocol.Signed{rm, readd, promote, again}, []int{0, 2}, []int{0, 2})
	if v.Removed[k.ids[1]] != 2 {
		t.Fatalf("removed %v: want company 1 with last seq 2", v.Removed)
	}
}

// TestMembershipRemovedAdmin: a member added by an admin is undone when the
// admin's removal leaves that change past its last valid seq, also when the
// two were concurrent, and stays when the change is within it.
func TestMembershipRemovedAdmin(t *testing.T) {
	for _, last := range []uint64{1, 2} {
		t.Run(fmt.Sprint("lastSeq=", last), func(t *testing.T) {
			k := newKit(t, []int{0, 1}, []int{0, 1})
			first := k.change(1, k.add(2), k.gen)  // seq 1
			second := k.change(1, k.add(3), first) // seq 2, unknown to 0
			rm := k.change(0, k.remove(1, last), first)
			want := []int{0, 2}
			if last >= 2 {
				want = []int{0, 2, 3}
			}
			v := k.check([]*protocol.Signed{first, second, rm}, []int{0}, want)
			if v.Applied[second.CID] != (last >= 2) {
				t.Fatalf("the removed admin's change at seq 2 applied=%v with last seq %d", v.Applied[second.CID], last)
			}
		})
	}
	// A removed admin's change that the linearisation puts first (its CID
	// or a chain of changes that precede the removal) is excluded too, and
	// so is what it enabled.
	k := newKit(t, []int{0, 1}, []int{0, 1})
	k.skip(1, 5)
	promote := k.change(1, k.admins(0, 1, 2), k.gen) // seq 6
	byPromoted := k.change(2, k.add(3), promote)
	rm := k.change(0, k.remove(1, 5), k.gen)
	v := k.check([]*protocol.Signed{promote, byPromoted, rm}, []int{0}, []int{0})
	if v.Applied[promote.CID] || v.Applied[byPromoted.CID] || !v.Applied[rm.CID] {
		t.Fatalf("applied %v: want the removal only", v.Applied)
	}
}

// TestMembershipConcurrentAdmins: of two concurrent admins lists, the one
// placed later (the higher CID, here) wins.
func TestMembershipConcurrentAdmins(t *testing.T) {
	k := newKit(t, []int{0, 1}, []int{0, 1, 2, 3})
	a := k.change(0, k.admins(0, 1, 2), k.gen)
	b := k.change(1, k.admins(0, 1, 3), k.gen)
	want := []int{0, 1, 3}
	if a.CID.KeyString() > b.CID.KeyString() {
		want = []int{0, 1, 2}
	}
	v := k.check([]*protocol.Signed{a, b}, want, []int{0, 1, 2, 3})
	if len(v.Heads) != 2 {
		t.Fatalf("heads %v: want both concurrent changes", v.Heads)
	}
	// A change after both settles it.
	c := k.change(0, k.admins(0, 1), a, b)
	v = k.check([]*protocol.Signed{a, b, c}, []int{0, 1}, []int{0, 1, 2, 3})
	if !slices.Equal(v.Heads, []cid.Cid{c.CID}) {
		t.Fatalf("heads %v: want the last change", v.Heads)
	}
}

func TestMembershipPending(t *testing.T) {
	k := newKit(t, []int{0}, []int{0})
	a := k.change(0, k.add(1), k.gen)
	b := k.change(0, k.add(2), a)
	c := k.change(0, k.add(3), b)
	v := k.check([]*protocol.Signed{a, c}, []int{0}, []int{0, 1})
	if len(v.Pending) != 1 || v.Pending[0] != c || len(v.Order) != 2 {
		t.Fatalf("pending %v, order %d: want c pending behind the missing b", v.Pending, len(v.Order))
	}
	if !slices.Equal(v.Heads, []cid.Cid{a.CID}) {
		t.Fatalf("heads %v: a pending change is no head", v.Heads)
	}
	k.check([]*protocol.Signed{a, b, c}, []int{0}, []int{0, 1, 2, 3})
	// Without a genesis nothing can be decided.
	if v := protocol.Membership(nil, []*protocol.Signed{a, a, b}); len(v.Pending) != 2 || len(v.Members) != 0 {
		t.Fatalf("without a genesis: %+v", v)
	}
}

// TestMembershipBeforeCausalOrder: changes without "after" links, as nodes
// wrote them before, still fold as the chain of admins meant.
func TestMembershipBeforeCausalOrder(t *testing.T) {
	k := newKit(t, []int{0}, []int{0})
	promote := k.change(0, k.admins(0, 1))
	byNew := k.change(1, k.add(2))
	k.check([]*protocol.Signed{promote, byNew}, []int{0, 1}, []int{0, 1, 2})
}

func TestMembershipIgnoresStrangers(t *testing.T) {
	k := newKit(t, []int{0}, []int{0})
	a := k.change(0, k.add(1), k.gen)
	other := newKit(t, []int{0}, []int{0, 5}) // another genesis, another channel
	foreign := other.change(0, other.add(2), other.gen)
	k.check([]*protocol.Signed{a, a, foreign, k.gen, nil}, []int{0}, []int{0, 1})
}

// TestMembershipProperty: the same generated set, in many random orders and
// with duplicates, always gives one view.
func TestMembershipProperty(t *testing.T) {
	var total govgen.Stats
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		set, err := govgen.Generate(rng, 7, 120)
		if err != nil {
			t.Fatal(err)
		}
		st := set.Stats
		total.Adds += st.Adds
		total.Removes += st.Removes
		total.AdminRemoves += st.AdminRemoves
		total.AdminLists += st.AdminLists
		total.ReAdds += st.ReAdds
		total.Concurrent += st.Concurrent
		want := protocol.Membership(set.Genesis, set.Changes)
		if len(want.Pending) != 0 {
			t.Fatalf("seed %d: %d changes pending in a complete set", seed, len(want.Pending))
		}
		for range 50 {
			c := slices.Clone(set.Changes)
			for range rng.IntN(len(c) + 1) {
				c = append(c, c[rng.IntN(len(c))])
			}
			rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
			if d := diff(want, protocol.Membership(set.Genesis, c)); d != "" {
				t.Fatalf("seed %d: %s", seed, d)
			}
		}
	}
	t.Logf("over %d sets: %+v", seeds, total)
	if total.Adds == 0 || total.Removes == 0 || total.AdminRemoves == 0 || total.AdminLists == 0 || total.ReAdds == 0 || total.Concurrent == 0 {
		t.Fatalf("the sets do not cover every rule: %+v", total)
	}
}

// FuzzMembership folds a subset, with duplicates, of a generated set, chosen
// and shuffled by the fuzzer's bytes, and checks that any order of it gives
// the same view and that nothing panics.
func FuzzMembership(f *testing.F) {
	set, err := govgen.Generate(rand.New(rand.NewPCG(3, 3)), 6, 80)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{9, 9, 9, 1, 200, 7})
	f.Fuzz(func(t *testing.T, pick []byte) {
		if len(pick) > 512 || len(set.Changes) == 0 {
			return
		}
		var c []*protocol.Signed
		for _, b := range pick {
			c = append(c, set.Changes[int(b)%len(set.Changes)])
		}
		want := protocol.Membership(set.Genesis, c)
		slices.Reverse(c)
		if d := diff(want, protocol.Membership(set.Genesis, c)); d != "" {
			t.Fatal(d)
		}
		for _, p := range want.Admins {
			if !want.IsMember(p) {
				t.Fatalf("admin %s is no member", p)
			}
		}
		for p := range want.Removed {
			if want.IsMember(p) {
				t.Fatalf("removed %s is a member", p)
			}
		}
	})
}

// BenchmarkMembership folds a generated set of several hundred changes.
func BenchmarkMembership(b *testing.B) {
	set, err := govgen.Generate(rand.New(rand.NewPCG(5, 5)), 8, 1500)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		protocol.Membership(set.Genesis, set.Changes)
	}
	b.ReportMetric(float64(len(set.Changes)), "changes")
}
