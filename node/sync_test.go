package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// restart closes n and starts a new node on the same home.
func restart(t testing.TB, n *Node) *Node {
	t.Helper()
	cfg := n.cfg
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return reopen(t, cfg)
}

// reopen starts a node on an existing home.
func reopen(t testing.TB, cfg *Config) *Node {
	t.Helper()
	level := slog.LevelDebug
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: level})).With("company", cfg.Name)
	n, err := New(cfg, WithLogger(log), WithoutNATPortMap())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// channelCIDs returns every record of ch that n lists, as a sorted set.
func channelCIDs(t testing.TB, n *Node, ch cid.Cid) []string {
	t.Helper()
	var out []string
	cursor := ""
	for {
		recs, next, err := n.store.ByChannel(ch, 1000, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range recs {
			out = append(out, s.CID.String())
		}
		if next == "" {
			break
		}
		cursor = next
	}
	slices.Sort(out)
	return out
}

func heads(t testing.TB, n *Node, ch cid.Cid) map[peer.ID]uint64 {
	t.Helper()
	h, err := n.store.Heads(ch)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func publishNotes(t testing.TB, n *Node, ch cid.Cid, k int, prefix string) *protocol.Signed {
	t.Helper()
	var last *protocol.Signed
	var err error
	for i := range k {
		if last, err = n.Publish(context.Background(), ch, "note", map[string]any{"text": fmt.Sprintf("%s %d", prefix, i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

// TestMemberDownCatchesUp: a member that is down while 1,000 records are
// published holds all of them soon after it comes back.
func TestMemberDownCatchesUp(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	cfg := b.cfg
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	last := publishNotes(t, a, ch, 1000, "while B is down")
	b = reopen(t, cfg)
	waitFor(t, "B to catch up on 1,000 records", 30*time.Second, func() bool { return has(b, last.CID) })
	if got, want := heads(t, b, ch)[a.ID()], last.Record.Seq; got != want {
		t.Fatalf("B holds A's chain to %d, want %d", got, want)
	}
	// Both hold the same records once A has also synced B's own (its
	// profile, published as it joined).
	waitFor(t, "A and B to hold the same records", 10*time.Second, func() bool {
		return slices.Equal(channelCIDs(t, b, ch), channelCIDs(t, a, ch))
	})
}

// TestRecordsFlowThroughAnyMember: with the author down, a restarted third
// member gets the author's records from the second.
func TestRecordsFlowThroughAnyMember(t *testing.T) {
	a, b, c := startNode(t, "A"), startNode(t, "B"), startNode(t, "C")
	ch := link(t, a, b, "abc")
	ctx := context.Background()
	code, err := a.Invite(ctx, ch, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	// B and C meet once, so each learns the other's address.
	if err := c.host.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "C to keep B's address", 10*time.Second, func() bool { return c.partners.has(b.ID()) })
	cCfg := c.cfg
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	last := publishNotes(t, a, ch, 200, "while C is down")
	waitFor(t, "B to hold A's records", 20*time.Second, func() bool { return has(b, last.CID) })
	if err := a.Close(); err != nil { // the author goes down
		t.Fatal(err)
	}
	c = reopen(t, cCfg)
	waitFor(t, "C to get A's records from B", 30*time.Second, func() bool { return has(c, last.CID) })
	if got := heads(t, c, ch)[a.ID()]; got != last.Record.Seq {
		t.Fatalf("C holds A's chain to %d, want %d", got, last.Record.Seq)
	}
}

// partition makes the two groups refuse each other and drops their
// connections; heal undoes it and reconnects everyone.
func partition(groups ...[]*Node) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, x := range g {
				for _, y := range h {
					x.gater.deny.Store(y.ID(), true)
					_ = x.host.Network().ClosePeer(y.ID())
				}
			}
		}
	}
}

func heal(t testing.TB, all []*Node) {
	t.Helper()
	for _, x := range all {
		x.gater.deny.Clear()
	}
	connectAll(t, all)
}

func connectAll(t testing.TB, all []*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, x := range all {
		for _, y := range all[i+1:] {
			if err := x.host.Connect(ctx, peer.AddrInfo{ID: y.ID(), Addrs: y.host.Addrs()}); err != nil {
				t.Fatalf("connect %s to %s: %v", x.cfg.Name, y.cfg.Name, err)
			}
		}
	}
}

// TestPartitionHeals: a partition of a five-node channel, with records
// published on both sides, heals into identical record sets and heads.
func TestPartitionHeals(t *testing.T) {
	var all []*Node
	for i := range 5 {
		all = append(all, startNode(t, fmt.Sprintf("N%d", i+1)))
	}
	ctx := context.Background()
	ch, err := all[0].CreateChannel(ctx, "five", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all[1:] {
		code, err := all[0].Invite(ctx, ch, m.ID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Join(ctx, code); err != nil {
			t.Fatal(err)
		}
	}
	connectAll(t, all)
	left, right := all[:3], all[3:]
	partition(left, right)
	var lastLeft, lastRight []*protocol.Signed
	for _, n := range left {
		lastLeft = append(lastLeft, publishNotes(t, n, ch, 30, n.cfg.Name+" left"))
	}
	for _, n := range right {
		lastRight = append(lastRight, publishNotes(t, n, ch, 30, n.cfg.Name+" right"))
	}
	// Each side converges on its own records and sees none of the other's.
	for _, n := range left {
		for _, s := range lastLeft {
			waitFor(t, n.cfg.Name+" to hold its side's records", 20*time.Second, func() bool { return has(n, s.CID) })
		}
		for _, s := range lastRight {
			if has(n, s.CID) {
				t.Fatalf("%s holds a record from across the partition", n.cfg.Name)
			}
		}
	}
	heal(t, all)
	want := append(lastLeft, lastRight...)
	for _, n := range all {
		for _, s := range want {
			waitFor(t, n.cfg.Name+" to hold every record after the heal", 30*time.Second, func() bool { return has(n, s.CID) })
		}
	}
	ref := channelCIDs(t, all[0], ch)
	refHeads := heads(t, all[0], ch)
	for _, n := range all[1:] {
		if got := channelCIDs(t, n, ch); !slices.Equal(got, ref) {
			t.Fatalf("%s holds %d records, N1 %d", n.cfg.Name, len(got), len(ref))
		}
		if got := heads(t, n, ch); !maps.Equal(got, refHeads) {
			t.Fatalf("%s heads %v, N1 %v", n.cfg.Name, got, refHeads)
		}
	}
}

// copyDir copies a directory tree (a node's home while it is stopped).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoredBackup: a node restored from an old copy of its data catches
// up on its own records from a partner before it publishes, and no fork
// evidence of it appears anywhere.
func TestRestoredBackup(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	publishNotes(t, b, ch, 5, "before the backup")
	cfg := b.cfg
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	backup := t.TempDir()
	copyDir(t, cfg.Home, backup)

	b = reopen(t, cfg)
	lost := publishNotes(t, b, ch, 5, "after the backup")
	// A must hold the whole run, not only its last record: gossip sent
	// before the mesh formed is repaired by sync, and the restore below
	// loses B's copies for good.
	waitFor(t, "A to hold B's later records", 20*time.Second, func() bool { return heads(t, a, ch)[b.ID()] == lost.Record.Seq })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The disk dies; the operator restores last night's copy.
	if err := os.RemoveAll(cfg.Home); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, cfg.Home)
	b = reopen(t, cfg)
	next, err := b.Publish(context.Background(), ch, "note", map[string]any{"text": "first after the restore"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Record.Seq != lost.Record.Seq+1 || next.Record.Prev != lost.CID {
		t.Fatalf("after the restore B signed seq %d (prev %s); want seq %d after %s", next.Record.Seq, next.Record.Prev, lost.Record.Seq+1, lost.CID)
	}
	waitFor(t, "A to hold B's new record", 20*time.Second, func() bool { return has(a, next.CID) })
	for _, n := range []*Node{a, b} {
		forks, err := n.store.Forks(ch)
		if err != nil {
			t.Fatal(err)
		}
		if len(forks) != 0 {
			t.Fatalf("fork evidence on %s: %+v", n.cfg.Name, forks)
		}
	}
	if got := heads(t, a, ch)[b.ID()]; got != next.Record.Seq {
		t.Fatalf("A holds B's chain to %d, want %d", got, next.Record.Seq)
	}
}

// TestOwnHeadUnconfirmed: with every partner offline, a restarted node
// refuses to publish rather than risk signing a seq twice.
func TestOwnHeadUnconfirmed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the own-head timeout")
	}
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = restart(t, b)
	before := heads(t, b, ch)[b.ID()]
	// A context longer than ownHeadWait: the refusal must come from the
	// own-head check, not from the caller giving up.
	ctx, cancel := context.WithTimeout(context.Background(), ownHeadWait+30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := b.Publish(ctx, ch, "note", map[string]any{"text": "x"}, nil)
	if err == nil {
		t.Fatal("published with no partner to confirm the own head")
	}
	if !errors.Is(err, ErrOwnHeadUnconfirmed) || ctx.Err() != nil {
		t.Fatalf("publish with every partner offline: %v, want ErrOwnHeadUnconfirmed", err)
	}
	if !strings.Contains(err.Error(), "sangsaeng peers") {
		t.Fatalf("the refusal does not say what to do: %v", err)
	}
	if took := time.Since(start); took < ownHeadWait {
		t.Fatalf("refused after %s, before the %s wait for a partner", took, ownHeadWait)
	}
	if got := heads(t, b, ch)[b.ID()]; got != before {
		t.Fatalf("B's own head moved from %d to %d on a refused publish", before, got)
	}
}

// TestFetch: a member fetches a record it lacks from a partner; a peer that
// is not a member of the record's channel gets nothing.
func TestFetch(t *testing.T) {
	a, b, c := startNode(t, "A"), startNode(t, "B"), startNode(t, "C")
	ab := link(t, a, b, "ab")
	link(t, a, c, "ac")
	// A stores a record without gossiping it (an attachment, say).
	s := sealAs(t, a, ab, "note", map[string]any{"text": "검사성적서 첨부"})
	if _, err := a.store.Put(s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := b.Fetch(ctx, s.CID)
	if err != nil {
		t.Fatalf("member fetch: %v", err)
	}
	if got.CID != s.CID || !has(b, s.CID) {
		t.Fatal("the fetched record was not stored")
	}
	if _, err := c.Fetch(ctx, s.CID); err == nil {
		t.Fatal("a non-member of the channel fetched its record")
	}
	if has(c, s.CID) {
		t.Fatal("a non-member stored the record")
	}
}

// TestTailLossRepaired: the last records of a burst are lost on gossip
// (here: stored by their author and never gossiped), so no later record
// shows the gap. Once gossip from the author has been quiet for tailDelay,
// the partner syncs and holds them all, long before the periodic sync.
func TestTailLossRepaired(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "tail")
	// Let the syncs of connecting and grafting run their course first.
	syncsSettled(t, ch, a, b)
	for i := range 5 {
		if _, err := a.Publish(context.Background(), ch, "note", map[string]any{"text": fmt.Sprint("gossiped ", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The tail: signed and stored by A, never handed to gossipsub. Records
	// past it would show B the gap; there are none.
	var reqs []*pubReq
	for i := range 20 {
		reqs = append(reqs, &pubReq{ch: ch, kind: "note", body: map[string]any{"text": fmt.Sprint("lost ", i)}, done: make(chan struct{})})
	}
	if got := a.sealBatch(ch, reqs); len(got) != len(reqs) {
		t.Fatalf("sealed %d of %d records", len(got), len(reqs))
	}
	want := heads(t, a, ch)[a.ID()]
	// The periodic sync is 30 s away, and the sync on connecting is done:
	// only the tail check can bring the 20.
	start := time.Now()
	waitFor(t, "the lost tail at B", 10*time.Second, func() bool { return heads(t, b, ch)[a.ID()] == want })
	t.Logf("a tail of %d records repaired %s after it was stored", len(reqs), time.Since(start).Round(time.Millisecond))
}

// syncsSettled waits until a and b are in each other's mesh for ch and
// every sync that connecting and grafting scheduled between them has run:
// a graft schedules one graftSyncDelay later, so once that time has passed
// since both meshes held the other, a node with no sync of ch with the
// other queued or running has run it.
func syncsSettled(t *testing.T, ch cid.Cid, a, b *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !a.waitMesh(ctx, ch, b.ID()) || !b.waitMesh(ctx, ch, a.ID()) {
		t.Fatal("timed out waiting for A and B to graft each other")
	}
	meshed := time.Now()
	idle := func(n *Node, p peer.ID) bool {
		s := n.sync
		s.mu.Lock()
		defer s.mu.Unlock()
		j := syncJob{p, ch}
		return !s.pending[j] && s.running[j] == nil
	}
	waitFor(t, "the syncs of connecting and grafting to end", 30*time.Second, func() bool {
		return time.Since(meshed) > graftSyncDelay && idle(a, b.ID()) && idle(b, a.ID())
	})
}
