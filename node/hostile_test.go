package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestEquivocationCaughtAfterHeal: an author signs two different records for
// one seq and gives one to A, on one side of a partition, and the other to
// B and D, on the other side. After the heal, every node holds both as fork
// evidence; the author is flagged in the channel the API serves (and
// `sangsaeng channel show` prints); every node logs an alert naming the
// author; and each keeps the record it saw first in its place.
func TestEquivocationCaughtAfterHeal(t *testing.T) {
	equivocation(t, false)
}

// TestForkEvidenceRelayed is TestEquivocationCaughtAfterHeal where D, a
// supplier further down the chain, deals with A only through B: it must
// learn of the record it never saw from B, which holds it as evidence
// (docs/design.md, "Guarantees": every member eventually holds every
// record of its channels as long as a path of members connects it to a
// holder).
func TestForkEvidenceRelayed(t *testing.T) {
	equivocation(t, true)
}

// equivocation runs the equivocation scenario; with line, A and D never
// connect.
func equivocation(t *testing.T, line bool) {
	fast := func(c *Config) { c.SyncInterval = Duration{time.Second} } // anti-entropy, for D
	logs := map[string]*logLines{}
	start := func(name string) *Node {
		logs[name] = &logLines{t: t}
		return startNodeLog(t, name, slog.LevelDebug, fast, logs[name])
	}
	a, b, d, c := start("A"), start("B"), start("D"), start("Cheat")
	ch := link(t, a, b, "abcd")
	ctx := context.Background()
	for _, n := range []*Node{d, c} {
		code, err := a.Invite(ctx, ch, n.ID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Join(ctx, code); err != nil {
			t.Fatal(err)
		}
	}
	honest := []*Node{a, b, d}
	connectAll(t, append(slices.Clone(honest), c))
	waitFor(t, "everyone to know C's and D's membership", 10*time.Second, func() bool {
		for _, n := range honest {
			if !n.gov.memberOf(ch, c.ID()) || !n.gov.memberOf(ch, d.ID()) {
				return false
			}
		}
		return true
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
		for _, n := range honest {
			if heads(t, n, ch)[c.ID()] != one.Record.Seq-1 {
				return false
			}
		}
		return true
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A on one side; B and D, a supplier further down the chain that
	// deals with A only through B, on the other.
	partition([]*Node{a}, []*Node{b, d})
	if _, err := a.ingest(ch, one.Envelope, c.ID(), opGossip); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{b, d} {
		if _, err := n.ingest(ch, two.Envelope, c.ID(), opGossip); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range honest {
		if len(logs[n.cfg.Name].matching("equivocation")) > 0 {
			t.Fatalf("%s raised an alert before it saw both records", n.cfg.Name)
		}
	}
	if line {
		// A and B meet again; D still reaches A only through B.
		a.gater.deny.Delete(b.ID())
		b.gater.deny.Delete(a.ID())
		connectAll(t, []*Node{a, b})
	} else {
		heal(t, honest)
	}

	for _, n := range honest {
		waitFor(t, n.cfg.Name+" to hold both records", 20*time.Second, func() bool { return has(n, one.CID) && has(n, two.CID) })
		// The API, as `sangsaeng channel show --json` gets it.
		status, _, raw := newAPIHarness(t, n).do(t, "GET", "/v1/channels/"+ch.String(), nil)
		var v api.Channel
		if status != 200 || json.Unmarshal(raw, &v) != nil {
			t.Fatalf("%s: GET the channel: %d %s", n.cfg.Name, status, raw)
		}
		if !slices.Contains(v.Flagged, c.ID().String()) || len(v.Forks) != 1 {
			t.Fatalf("%s does not flag C: %s", n.cfg.Name, raw)
		}
		if f := v.Forks[0]; f.Author != c.ID().String() || f.Seq != one.Record.Seq || !slices.Contains(f.CIDs, one.CID.String()) || !slices.Contains(f.CIDs, two.CID.String()) {
			t.Fatalf("%s's evidence: %+v", n.cfg.Name, f)
		}
		if got := metric(t, n, "sangsaeng_records_fork_evidence_total"); got < 1 {
			t.Fatalf("%s counts %v fork evidence records", n.cfg.Name, got)
		}
		alerts := logs[n.cfg.Name].matching("level=ERROR", "equivocation", c.ID().String())
		if len(alerts) == 0 {
			t.Fatalf("%s logged no alert naming C", n.cfg.Name)
		}
		t.Logf("%s: flagged %v, fork at seq %d %v; alert: %s", n.cfg.Name, v.Flagged, v.Forks[0].Seq, v.Forks[0].CIDs, alerts[0])
	}
	// Each node keeps the record it saw first in the chain.
	for n, first := range map[*Node]string{a: one.CID.String(), b: two.CID.String(), d: two.CID.String()} {
		recs, err := n.store.ByAuthor(ch, c.ID(), one.Record.Seq, one.Record.Seq)
		if err != nil || len(recs) != 1 || recs[0].CID.String() != first {
			t.Fatalf("%s replaced the first record: %v %v", n.cfg.Name, recs, err)
		}
	}
}
