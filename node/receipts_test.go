package node

import (
	"context"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestReceipts: B, down while A publishes, catches up; asked, it signs a
// receipt of A's records it holds, which A reads (holds up to A's head,
// since when) and which verifies offline. C publishes receipts on its own,
// every receipt_interval, when what it holds changed, and not in answer to
// receipts alone.
func TestReceipts(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	c := startNodeWith(t, "C", slog.LevelDebug, func(c *Config) { c.ReceiptInterval.Duration = time.Second })
	x := link(t, a, b, "X")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err := a.Invite(ctx, x, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	connectAll(t, []*Node{a, b, c})
	cfgB := b.cfg
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	publishNotes(t, a, x, 20, "while B is down")
	b = reopen(t, cfgB)
	connectAll(t, []*Node{a, b, c})
	head, _ := a.store.Head(x, a.ID())
	waitFor(t, "B to catch up", 30*time.Second, func() bool { h, _ := b.store.Head(x, a.ID()); return h == head })

	if got, err := a.RequestReceipts(ctx, x); err != nil || got != 2 {
		t.Fatalf("receipts asked of B and C: %d, %v", got, err)
	}
	rs, err := a.Receipts(x)
	if err != nil {
		t.Fatal(err)
	}
	byMember := map[string]int{}
	for i, r := range rs {
		byMember[r.Member] = i
	}
	rb := rs[byMember[b.ID().String()]]
	if rb.Seq != head || rb.Head != head || rb.Since == "" || rb.CID == "" {
		t.Fatalf("B's receipt at A: %+v (A's head %d)", rb, head)
	}
	env, err := base64.RawURLEncoding.DecodeString(rb.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.Open(env) // offline: the envelope alone
	if err != nil || s.Record.Author != b.ID() || s.Record.Kind != protocol.KindHeadsReceipt || s.CID.String() != rb.CID {
		t.Fatalf("B's receipt does not verify offline as B's: %v", err)
	}

	// C, on its own: A publishes one more record; C's next receipt says so.
	more := publishNotes(t, a, x, 1, "one more")
	waitFor(t, "C's own receipt of A's newest record", 20*time.Second, func() bool {
		rs, _ := a.Receipts(x)
		for _, r := range rs {
			if r.Member == c.ID().String() && r.Seq == more.Record.Seq {
				return true
			}
		}
		return false
	})
	// Receipts do not answer receipts: B publishes one (it holds C's new
	// receipt), and C, which takes it, publishes none in answer.
	waitFor(t, "B to hold C's newest receipt", 20*time.Second, func() bool {
		h, _ := b.store.Head(x, c.ID())
		hc, _ := c.store.Head(x, c.ID())
		return h == hc
	})
	h1, _ := c.store.Head(x, c.ID())
	bHead, _ := b.store.Head(x, b.ID())
	time.Sleep(forcedEvery) // B's last forced receipt was made for A's request
	if s, err := b.receipt(ctx, x, true); err != nil || s == nil || s.Record.Seq <= bHead {
		t.Fatalf("B's receipt: %v", err)
	}
	waitFor(t, "C to hold B's receipt", 20*time.Second, func() bool { h, _ := c.store.Head(x, b.ID()); return h > bHead })
	stays(t, "C publishing no receipt in answer to receipts", 3*time.Second, func() bool {
		h, _ := c.store.Head(x, c.ID())
		return h == h1
	})
}
