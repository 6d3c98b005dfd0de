package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
)

// relayAddr is a's first TCP address with its peer ID, as relay.use takes it.
func relayAddr(t *testing.T, n *Node) string {
	t.Helper()
	for _, a := range n.host.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil && !isCircuit(a) {
			return a.String() + "/p2p/" + n.self.String()
		}
	}
	t.Fatalf("%s has no TCP address", n.self)
	return ""
}

// onlyRelayed reports whether every connection between a and b goes
// through a relay, and that there is one.
func onlyRelayed(a, b *Node) bool {
	conns := a.host.Network().ConnsToPeer(b.self)
	for _, c := range conns {
		if !isCircuit(c.RemoteMultiaddr()) {
			return false
		}
	}
	return len(conns) > 0
}

// TestRelayedPartners: R runs a relay for its partners; A holds a slot at
// R (relay.use), B learns R from A's invite code. A and B cannot reach each
// other directly (their gaters refuse every direct address of the other,
// as two NATs would), yet B joins A's channel with the invite and records
// flow both ways through R. R refuses a slot to a peer that is not its
// partner. Reachability reports the relay and the relayed addresses. A
// catch-up of over 128 KiB (relay v2's default data limit) completes
// through R (relayedCatchUp).
func TestRelayedPartners(t *testing.T) {
	r := startNodeWith(t, "R", slog.LevelDebug, func(c *Config) { c.Relay.Enabled = true })
	a := startNodeWith(t, "A", slog.LevelDebug, func(c *Config) { c.Relay.Use = []string{relayAddr(t, r)} })
	b := startNode(t, "B")
	stranger := startNode(t, "C")
	a.gater.noDirect.Store(b.self, true)
	b.gater.noDirect.Store(a.self, true)

	link(t, r, a, "r-a") // R's partners: A and B
	link(t, r, b, "r-b")
	waitFor(t, "A's slot at R", 20*time.Second, func() bool { return len(a.Reachability().RelayAddrs) > 0 })
	reach := a.Reachability()
	if reach.State != "relayed" || len(reach.Relays) != 1 || reach.Relays[0].ID != r.self.String() || !reach.Relays[0].Reserved || reach.Relays[0].Source != "config" {
		t.Fatalf("A's reachability: %+v", reach)
	}
	if !r.Reachability().RelayService {
		t.Fatalf("R does not report its relay service")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "a-b", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, err := a.Invite(ctx, ch, b.self)
	if err != nil {
		t.Fatal(err)
	}
	_, inviter, err := decodeInvite(code)
	if err != nil {
		t.Fatal(err)
	}
	if len(relaysOf(inviter.Addrs)) != 1 {
		t.Fatalf("the invite carries no relay address: %v", inviter.Addrs)
	}
	if _, err := b.Join(ctx, code); err != nil {
		t.Fatalf("B joins through R: %v", err)
	}
	if !onlyRelayed(b, a) {
		t.Fatalf("B's connections to A: %v", b.host.Network().ConnsToPeer(a.self))
	}
	// B keeps the relay its invite named, with a slot of its own.
	waitFor(t, "B's slot at R", 20*time.Second, func() bool {
		rr := b.Reachability()
		return len(rr.Relays) == 1 && rr.Relays[0].Source == "invite" && rr.Relays[0].Reserved
	})

	for i, from := range []*Node{a, b} {
		to := []*Node{b, a}[i]
		s, err := from.Publish(ctx, ch, "note", map[string]any{"text": "through the relay"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the record through R", 20*time.Second, func() bool { return has(to, s.CID) })
	}
	if !onlyRelayed(a, b) {
		t.Fatalf("A's connections to B: %v", a.host.Network().ConnsToPeer(b.self))
	}

	// A peer that shares no channel with R gets no slot there.
	rinfo, _ := peer.AddrInfoFromString(relayAddr(t, r))
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	stranger.gater.extra.Store(r.self, true) // it would dial R; R must refuse it
	if _, err := client.Reserve(rctx, stranger.host, *rinfo); err == nil {
		t.Fatalf("R gave a slot to a peer that is not its partner")
	}
	t.Logf("R connected to the stranger: %v", r.host.Network().ConnsToPeer(stranger.self))
	if (relayACL{r}).AllowReserve(stranger.self, nil) || (relayACL{r}).AllowConnect(stranger.self, nil, a.self) {
		t.Fatalf("R's relay ACL admits a stranger")
	}

	relayedCatchUp(t, a, b, ch)
}

// relayedCatchUp closes b, has a publish records whose envelopes add up to
// well over relay v2's default data limit (128 KiB a relayed connection),
// starts b again and waits until it holds them all. b reaches a only
// through the relay (a's gater refuses every direct connection between
// them, both ways), so the catch-up's sync runs on relayed connections
// alone, and none of them is limited: R's circuits have no data limit.
func relayedCatchUp(t *testing.T, a, b *Node, ch cid.Cid) {
	t.Helper()
	const n, workers = 1500, 8
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see B gone", 10*time.Second, func() bool { return len(a.host.Network().ConnsToPeer(b.self)) == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	text := strings.Repeat("a catch-up through the relay, over 128 KiB. ", 4)
	var (
		mu    sync.Mutex
		cids  []cid.Cid
		bytes int
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				s, err := a.Publish(ctx, ch, "note", map[string]any{"text": fmt.Sprintf("%d: %s", i, text)}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cids = append(cids, s.CID)
				bytes += len(s.Envelope)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	const relayLimit = 128 << 10 // relay v2's default data limit a connection
	if bytes < 3*relayLimit {
		t.Fatalf("%d records are %d bytes of envelopes, not well over %d", n, bytes, relayLimit)
	}

	b2 := restart(t, b)
	b2.gater.noDirect.Store(a.self, true) // a refuses direct ones to b already
	start := time.Now()
	missing := cids
	relayedOnly, unlimited := true, true
	waitFor(t, "B's catch-up through R", 90*time.Second, func() bool {
		for _, c := range b2.host.Network().ConnsToPeer(a.self) {
			relayedOnly = relayedOnly && isCircuit(c.RemoteMultiaddr())
			unlimited = unlimited && !c.Stat().Limited
		}
		for len(missing) > 0 && has(b2, missing[0]) {
			missing = missing[1:]
		}
		return len(missing) == 0
	})
	if !relayedOnly || !unlimited || !onlyRelayed(b2, a) || !onlyRelayed(a, b2) {
		t.Fatalf("B's connections to A during the catch-up: relayed only %v, none limited %v; now %v", relayedOnly, unlimited, b2.host.Network().ConnsToPeer(a.self))
	}
	t.Logf("catch-up through R: %d records, %d KiB of envelopes, in %s after B's restart",
		n, bytes>>10, time.Since(start).Round(time.Millisecond))
}

// TestPartnerFoundByDHT: A and B share a channel, both with R. B restarts
// on new ports and never dials A: A's addresses of B are all stale, and A
// finds B again through the partners' DHT, where R knows where B is now. The address A was given for B stays in its
// book, beside the ones B announces now.
func TestPartnerFoundByDHT(t *testing.T) {
	r := startNode(t, "R")
	a := startNode(t, "A")
	b := startNode(t, "B")
	link(t, r, a, "r-a")
	link(t, r, b, "r-b")
	link(t, a, b, "a-b")
	waitFor(t, "A to learn B's addresses", 10*time.Second, func() bool { return len(a.partners.all()[b.self].Learned) > 0 })
	old := b.host.Addrs()
	// An address A was given for B (by an invite, or its operator): stale
	// after B moves, it stays in the book all the same.
	given := []string{old[0].String()}
	if err := a.rememberPartner(b.self, old[:1], "", false); err != nil {
		t.Fatal(err)
	}
	home := b.cfg.Home
	// B forgets A's addresses, so that only A can bring them together.
	if err := b.partners.remove(a.self); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see B gone", 10*time.Second, func() bool { return len(a.host.Network().ConnsToPeer(b.self)) == 0 })

	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MDNS = false
	b2, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("company", "B again")), WithoutNATPortMap())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close() })
	b2.gater.noDial.Store(a.self, true) // only A's lookup may bring them together
	if err := b2.Start(); err != nil {
		t.Fatal(err)
	}
	for _, na := range b2.host.Addrs() {
		for _, oa := range old {
			if na.Equal(oa) {
				t.Fatalf("B listens on an old address again: %s", na)
			}
		}
	}
	waitFor(t, "B back at R", 20*time.Second, func() bool { return len(r.host.Network().ConnsToPeer(b2.self)) > 0 })
	start := time.Now()
	waitFor(t, "A to find B through the DHT", 90*time.Second, func() bool { return len(a.host.Network().ConnsToPeer(b2.self)) > 0 })
	// B never dials A, and A's book holds only B's old addresses: A
	// dialled B at an address the partners' DHT gave, from its dial loop's
	// lookup or from the DHT's own lookups, which dial the peers R names.
	for _, c := range a.host.Network().ConnsToPeer(b2.self) {
		if c.Stat().Direction != network.DirOutbound {
			t.Fatalf("B dialled A, which it must not: %v", c.RemoteMultiaddr())
		}
	}
	t.Logf("A found B again %s after B was back at R (by its dial loop's lookup: %v)",
		time.Since(start).Round(time.Millisecond), counterValue(t, a.metrics.dhtFound) > 0)
	waitFor(t, "A to learn B's new addresses", 10*time.Second, func() bool {
		l := a.partners.all()[b.self].Learned
		return len(l) > 0 && l[0] != old[0].String()
	})
	kept := a.partners.all()[b.self].Addrs
	for _, g := range given {
		found := false
		for _, k := range kept {
			found = found || k == g
		}
		if !found {
			t.Fatalf("A's book lost the address it was given %s: %v", g, kept)
		}
	}
}

// TestDHTPartnersOnly: the partners' DHT speaks its own protocol
// (/sangsaeng/kad/1.0.0), never the public IPFS DHT's /ipfs/kad/1.0.0, and
// its routing table holds only peers the gater admits: A's partners, not a
// stranger that tried to connect, nor one that connected in a dial-back
// window (both run the same DHT), nor a partner once the operator removed
// it. The gater, and for a dial-back the stream gate, stop a stranger
// before the DHT hears of it, so the table's own filter (newDHT) is a
// line behind them that this test does not reach by itself; the removed
// partner's case does need forgetInDHT.
func TestDHTPartnersOnly(t *testing.T) {
	r := startNode(t, "R")
	a := startNode(t, "A")
	b := startNode(t, "B")
	link(t, r, a, "r-a")
	link(t, a, b, "a-b")

	kad := DHTPrefix + "/kad/1.0.0"
	speaks := false
	for _, p := range a.host.Mux().Protocols() {
		speaks = speaks || string(p) == kad
		if strings.HasPrefix(string(p), "/ipfs/kad/") {
			t.Fatalf("A speaks the public IPFS DHT's %s", p)
		}
	}
	if !speaks {
		t.Fatalf("A does not speak %s: %v", kad, a.host.Mux().Protocols())
	}
	inTable := func(n *Node, p peer.ID) bool { return n.dht.RoutingTable().Find(p) != "" }
	waitFor(t, "R and B in A's routing table", 20*time.Second, func() bool { return inTable(a, r.self) && inTable(a, b.self) })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ai := peer.AddrInfo{ID: a.self, Addrs: a.host.Addrs()}
	// A stranger that tries: A's gater refuses it.
	tried := startNode(t, "C")
	tried.gater.extra.Store(a.self, true)
	if err := tried.host.Connect(ctx, ai); err == nil {
		waitFor(t, "A to drop the stranger", 10*time.Second, func() bool { return len(a.host.Network().ConnsToPeer(tried.self)) == 0 })
	}
	// A stranger that connects, as AutoNAT's dial-back may, and asks A's
	// DHT.
	a.dialBacks.opened()
	connected := startNode(t, "D")
	connected.gater.extra.Store(a.self, true)
	if err := connected.host.Connect(ctx, ai); err != nil {
		t.Fatalf("in a dial-back window, the stranger's connection was refused: %v", err)
	}
	for _, s := range []*Node{tried, connected} {
		select {
		case <-s.dht.ForceRefresh(): // its lookups ask A, when it can
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	// A partner the operator added, then removed.
	removed := startNode(t, "E")
	removed.gater.extra.Store(a.self, true)
	if err := a.AddPartner(ctx, removed.self, removed.host.Addrs(), "E"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "E in A's routing table", 20*time.Second, func() bool { return inTable(a, removed.self) })
	if err := a.RemovePartner(removed.self); err != nil {
		t.Fatal(err)
	}

	for _, s := range []*Node{tried, connected, removed} {
		if inTable(a, s.self) {
			t.Fatalf("A's routing table holds %s, which its gater does not admit", s.cfg.Name)
		}
	}
	for _, p := range a.dht.RoutingTable().ListPeers() {
		if !a.gater.allowed(p) {
			t.Fatalf("A's routing table holds %s, which its gater does not admit", p)
		}
	}
	if !inTable(a, r.self) || !inTable(a, b.self) {
		t.Fatalf("A's routing table lost a partner: %v", a.dht.RoutingTable().ListPeers())
	}
}
