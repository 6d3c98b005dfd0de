package node

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestReplayChangesNothing: a member re-sends every old record of a channel,
// governance included (the invitation of a member who was removed since),
// over gossipsub and over sync. The receiver's records, heads, membership
// and fork evidence do not change; the resends are counted as duplicates,
// and, being harmless, cost the sender nothing.
func TestReplayChangesNothing(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, gone := newKey(t)
	addMember(t, a, ch, gone)
	if err := a.RemoveMember(ctx, ch, gone); err != nil {
		t.Fatal(err)
	}
	mal, malID := newKey(t)
	addMember(t, a, ch, malID)
	publishNotes(t, a, ch, 40, "A's original")
	publishNotes(t, b, ch, 10, "B's original")
	waitFor(t, "A and B to hold the same records", 20*time.Second, func() bool {
		return slices.Equal(channelCIDs(t, a, ch), channelCIDs(t, b, ch))
	})
	var old [][]byte
	seen := map[string]bool{}
	add := func(s *protocol.Signed) {
		if !seen[s.CID.KeyString()] {
			seen[s.CID.KeyString()] = true
			old = append(old, s.Envelope)
		}
	}
	for cursor := ""; ; {
		recs, next, err := b.store.ByChannel(ch, 1000, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range recs {
			add(s)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	// A fresh gossipsub, whose cache of seen messages is empty: replays
	// reach the validator instead of stopping at gossipsub's door.
	b = restart(t, b)
	waitFor(t, "B to reconnect to A", 20*time.Second, func() bool { return b.connected(a.ID()) })
	wantCIDs, wantHeads, wantCount := channelCIDs(t, b, ch), heads(t, b, ch), b.store.Count()
	unchanged := func(how string) {
		t.Helper()
		if got := channelCIDs(t, b, ch); !slices.Equal(got, wantCIDs) {
			t.Fatalf("after a replay %s, B holds %d records, before %d", how, len(got), len(wantCIDs))
		}
		if got := heads(t, b, ch); !maps.Equal(got, wantHeads) {
			t.Fatalf("after a replay %s, B's heads %v, before %v", how, got, wantHeads)
		}
		if got := b.store.Count(); got != wantCount {
			t.Fatalf("after a replay %s, B's store counts %d records, before %d", how, got, wantCount)
		}
		if b.gov.memberOf(ch, gone) {
			t.Fatalf("after a replay %s, the removed member is back", how)
		}
		if forks, err := b.store.Forks(ch); err != nil || len(forks) > 0 {
			t.Fatalf("after a replay %s, fork evidence: %v %v", how, forks, err)
		}
	}
	const dups = "sangsaeng_records_duplicate_total"

	// Over gossipsub.
	dup0 := metric(t, b, dups)
	h := bareHost(t, mal)
	// A member was removed: the channel is in its second membership epoch.
	sp := &spy{topic: b.topicOf(ch)}
	ps := barePubSub(t, h, true, sp)
	tp, err := ps.Join(b.topicOf(ch))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, addrInfo(b)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replayer to see B in the topic", 10*time.Second, func() bool { return slices.Contains(tp.ListPeers(), b.ID()) })
	for _, env := range old {
		if err := tp.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "B to see every replayed record", 20*time.Second, func() bool {
		return metric(t, b, dups)-dup0 >= float64(len(old))
	})
	gossipDups := metric(t, b, dups) - dup0
	unchanged("over gossipsub")

	// Over sync.
	dup1 := metric(t, b, dups)
	served := serveSync(h, ch, protocol.Heads(wantHeads), func() [][]byte { return old })
	if _, err := b.syncWith(ctx, malID, ch); err != nil {
		t.Fatalf("a sync answer of old records: %v", err)
	}
	waitFor(t, "B to see every answer", 10*time.Second, func() bool {
		return metric(t, b, dups)-dup1 >= float64(served.Load())*float64(len(old))
	})
	syncDups := metric(t, b, dups) - dup1
	unchanged("over sync")

	// Through the publisher's own path: its next seq is still the next.
	next, err := b.Publish(ctx, ch, "note", map[string]any{"text": "after the replays"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Record.Seq != wantHeads[b.ID()]+1 {
		t.Fatalf("B signed seq %d after the replays, want %d", next.Record.Seq, wantHeads[b.ID()]+1)
	}
	if p := b.penalty.get(malID); p != 0 {
		t.Fatalf("replays of valid records cost the sender a penalty of %v", p)
	}
	t.Logf("replayed %d old records: over gossipsub %v duplicates, over sync %v (%d answers); records, heads, membership unchanged; sender's score %.2f",
		len(old), gossipDups, syncDups, served.Load(), b.PeerScore(malID))
}
