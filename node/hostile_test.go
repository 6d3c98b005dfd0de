package node

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestEquivocationCaughtAfterHeal: an author signs two different records for
// one seq and gives one to each side of a partition. After the heal, every
// node holds both as fork evidence, the author is flagged, and the first
// record stays in its place.
func TestEquivocationCaughtAfterHeal(t *testing.T) {
	a, b, c := startNode(t, "A"), startNode(t, "B"), startNode(t, "Cheat")
	ch := link(t, a, b, "abc")
	ctx := context.Background()
	code, err := a.Invite(ctx, ch, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	connectAll(t, []*Node{a, b, c})
	waitFor(t, "everyone to know C's membership", 10*time.Second, func() bool {
		return a.gov.memberOf(ch, c.ID()) && b.gov.memberOf(ch, c.ID())
	})
	// C catches up on its own chain, then signs two records for its next seq.
	if _, err := c.Publish(ctx, ch, "note", map[string]any{"text": "honest"}, nil); err != nil {
		t.Fatal(err)
	}
	one := sealAs(t, c, ch, "note", map[string]any{"text": "ship 100 on Monday"})
	two := sealAs(t, c, ch, "note", map[string]any{"text": "ship 10 on Friday"})
	if one.Record.Seq != two.Record.Seq || one.CID == two.CID {
		t.Fatal("the two records must collide")
	}
	waitFor(t, "C's honest record everywhere", 10*time.Second, func() bool {
		return a.store.Count() > 0 && b.store.Count() > 0 && heads(t, a, ch)[c.ID()] == one.Record.Seq-1 && heads(t, b, ch)[c.ID()] == one.Record.Seq-1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	partition([]*Node{a}, []*Node{b})
	if _, err := a.ingest(ch, one.Envelope, c.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ingest(ch, two.Envelope, c.ID()); err != nil {
		t.Fatal(err)
	}
	heal(t, []*Node{a, b})
	for _, n := range []*Node{a, b} {
		waitFor(t, n.cfg.Name+" to hold both records", 20*time.Second, func() bool { return has(n, one.CID) && has(n, two.CID) })
		v, err := n.channelView(ch)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(v.Flagged, c.ID().String()) || len(v.Forks) != 1 {
			t.Fatalf("%s does not flag C: %+v", n.cfg.Name, v)
		}
		if f := v.Forks[0]; f.Seq != one.Record.Seq || !slices.Contains(f.CIDs, one.CID.String()) || !slices.Contains(f.CIDs, two.CID.String()) {
			t.Fatalf("%s's evidence: %+v", n.cfg.Name, f)
		}
	}
	// Each node keeps the record it saw first in the chain.
	for n, first := range map[*Node]string{a: one.CID.String(), b: two.CID.String()} {
		recs, err := n.store.ByAuthor(ch, c.ID(), one.Record.Seq, one.Record.Seq)
		if err != nil || len(recs) != 1 || recs[0].CID.String() != first {
			t.Fatalf("%s replaced the first record: %v %v", n.cfg.Name, recs, err)
		}
	}
}
