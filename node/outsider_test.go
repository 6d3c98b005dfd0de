package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestOutsidersReceiveNothing: peers that no channel invited dial a member
// and subscribe to a channel's topic while members publish, over TCP and
// QUIC, with gossipsub's default protocol IDs and with ours. Each receives
// nothing, not even gossip about message IDs, and is refused at the
// connection. The same holds, layer by layer, for:
//   - an outsider the operator let connect (a relay named in the config), so
//     that only the pubsub layer stands between it and the records;
//   - a bare host that is a member of another channel of the same node;
//   - a real node that is a member of another channel, knows the channel's
//     genesis, and subscribes to its topic through its own gossipsub.
func TestOutsidersReceiveNothing(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	topic := Topic(ch)
	c := startNode(t, "C")
	other := link(t, a, c, "ac") // C shares another channel with A

	type watcher struct {
		name      string
		id        peer.ID
		spy       *spy
		delivered func() int64
	}
	var watchers []watcher
	var refused []func(context.Context) // dial A again

	// 1. Outsiders refused at the connection: four of them, one per
	// transport and gossipsub flavour.
	refusedBefore := metric(t, a, "sangsaeng_connections_refused_total")
	for _, transport := range []ma.Protocol{ma.ProtocolWithCode(ma.P_TCP), ma.ProtocolWithCode(ma.P_QUIC_V1)} {
		for _, ours := range []bool{false, true} {
			name := fmt.Sprintf("outsider/%s/ours=%v", transport.Name, ours)
			h := bareHost(t, nil)
			sp := &spy{topic: topic}
			ps := barePubSub(t, h, ours, sp)
			_, got := joinCounting(t, ps, h.ID(), topic)
			var addrs []ma.Multiaddr
			for _, addr := range a.host.Addrs() {
				if _, err := addr.ValueForProtocol(transport.Code); err == nil {
					addrs = append(addrs, addr)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := h.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: addrs})
			cancel()
			// With the muxer agreed inside the Noise handshake, the dial
			// can succeed on the outsider's side before the member's gater
			// closes the connection.
			waitFor(t, name+" to be disconnected", 5*time.Second, func() bool {
				return !a.connected(h.ID()) && h.Network().Connectedness(a.ID()) != network.Connected
			})
			t.Logf("%s: dial returned %v; disconnected", name, err)
			watchers = append(watchers, watcher{name, h.ID(), sp, got.Load})
			refused = append(refused, func(ctx context.Context) { _ = h.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: addrs}) })
		}
	}
	if got := metric(t, a, "sangsaeng_connections_refused_total") - refusedBefore; got < 4 {
		t.Fatalf("A counted %v refused connections, want at least 4", got)
	}

	// 2. Outsiders the gater lets in (configured relays): pubsub alone
	// must keep them out.
	for _, ours := range []bool{false, true} {
		name := fmt.Sprintf("admitted-outsider/ours=%v", ours)
		h := bareHost(t, nil)
		a.gater.extra.Store(h.ID(), true)
		sp := &spy{topic: topic}
		ps := barePubSub(t, h, ours, sp)
		tp, got := joinCounting(t, ps, h.ID(), topic)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.Connect(ctx, addrInfo(a)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cancel()
		if ours {
			// A must know it is subscribed, or the test proves nothing.
			waitFor(t, "A to see the admitted outsider's subscription", 10*time.Second, func() bool {
				for _, p := range a.ps.ListPeers(topic) {
					if p == h.ID() {
						return true
					}
				}
				return false
			})
			// It publishes a record of its own into the channel: dropped
			// before gossipsub looks at it.
			k, _ := newKey(t)
			forged := chain(t, k, ch, 0, cid.Undef, 1, "let me in")[0]
			dropped := metric(t, a, "sangsaeng_pubsub_rpc_dropped_total")
			waitFor(t, "the admitted outsider to see A in the topic", 10*time.Second, func() bool { return len(tp.ListPeers()) > 0 })
			if err := tp.Publish(context.Background(), forged.Envelope); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "A to drop the outsider's publish", 10*time.Second, func() bool {
				return metric(t, a, "sangsaeng_pubsub_rpc_dropped_total") > dropped
			})
			if has(a, forged.CID) {
				t.Fatal("A stored a record an outsider published")
			}
		}
		watchers = append(watchers, watcher{name, h.ID(), sp, got.Load})
	}

	// 3. A bare host that is a member of the other channel, with our
	// gossipsub: a partner of A, so connected, but not of this channel.
	{
		k, id := newKey(t)
		addMember(t, a, other, id)
		h := bareHost(t, k)
		sp := &spy{topic: topic}
		ps := barePubSub(t, h, true, sp)
		_, got := joinCounting(t, ps, h.ID(), topic)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.Connect(ctx, addrInfo(a)); err != nil {
			t.Fatalf("member of another channel: %v", err)
		}
		cancel()
		waitFor(t, "A to see the other-channel member's subscription", 10*time.Second, func() bool {
			for _, p := range a.ps.ListPeers(topic) {
				if p == id {
					return true
				}
			}
			return false
		})
		watchers = append(watchers, watcher{"bare member of another channel", id, sp, got.Load})
	}

	// 4. C, a real node in the other channel. It learns the channel's
	// genesis (a former member would have it), so that its own pubsub
	// checks do not hide what A might send, and joins the topic.
	snap, _ := a.gov.channel(ch)
	for _, s := range snap.governance {
		if s.Record.Kind == protocol.KindChannelGenesis {
			if _, err := c.ingest(ch, s.Envelope, a.ID(), opGossip); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !c.gov.memberOf(ch, a.ID()) || c.gov.isJoined(ch) {
		t.Fatal("C should know the channel's genesis without being a member")
	}
	_, cGot := joinCounting(t, c.ps, c.ID(), topic)
	waitFor(t, "A to see C's subscription", 10*time.Second, func() bool {
		for _, p := range a.ps.ListPeers(topic) {
			if p == c.ID() {
				return true
			}
		}
		return false
	})
	watchers = append(watchers, watcher{"node C, member of another channel", c.ID(), nil, cGot.Load})

	// Members publish, both ways, while the refused outsiders keep
	// dialling.
	connectAll(t, []*Node{a, b})
	refused0 := metric(t, a, "sangsaeng_connections_refused_total")
	dialCtx, stopDials := context.WithCancel(context.Background())
	var dials sync.WaitGroup
	var redials atomic.Int64
	for _, dial := range refused {
		dials.Add(1)
		go func() {
			defer dials.Done()
			for dialCtx.Err() == nil {
				ctx, cancel := context.WithTimeout(dialCtx, 2*time.Second)
				dial(ctx)
				cancel()
				redials.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	lastA := publishNotes(t, a, ch, 30, "secret from A")
	lastB := publishNotes(t, b, ch, 30, "secret from B")
	waitFor(t, "the members to hold each other's records", 20*time.Second, func() bool { return has(b, lastA.CID) && has(a, lastB.CID) })
	waitFor(t, "A to refuse the outsiders' dials while the members publish", 10*time.Second, func() bool {
		return metric(t, a, "sangsaeng_connections_refused_total")-refused0 >= float64(len(refused))
	})

	// Gossip (IHAVE) would go out on heartbeats, once a second: give it
	// three.
	report := func() string {
		s := ""
		for _, w := range watchers {
			s += fmt.Sprintf("\n  %s: delivered %d", w.name, w.delivered())
			if w.spy != nil {
				s += fmt.Sprintf(", RPC publishes %d, IHAVE IDs %d", w.spy.msgs.Load(), w.spy.ihave.Load())
			}
		}
		return s
	}
	nothing := func() bool {
		for _, w := range watchers {
			if w.delivered() > 0 || (w.spy != nil && (w.spy.msgs.Load() > 0 || w.spy.ihave.Load() > 0)) {
				t.Logf("leak:%s", report())
				return false
			}
		}
		return true
	}
	stays(t, "no outsider receiving anything", 3*time.Second, nothing)
	stopDials()
	dials.Wait()
	t.Logf("the refused outsiders dialled A %d times more while the members published; A refused %v connections meanwhile",
		redials.Load(), metric(t, a, "sangsaeng_connections_refused_total")-refused0)

	var received int64
	for _, w := range watchers {
		if w.spy != nil {
			received += w.spy.msgs.Load() + w.spy.ihave.Load()
		}
		received += w.delivered()
		if a.mesh.has(topic, w.id) || b.mesh.has(topic, w.id) {
			t.Fatalf("%s is in a member's mesh", w.name)
		}
	}
	// C holds nothing of the channel but its genesis, and sync and fetch
	// are refused to it.
	if recs := channelCIDs(t, c, ch); len(recs) != 1 {
		t.Fatalf("C holds %d records of a channel it is not in", len(recs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.syncWith(ctx, a.ID(), ch); !errors.Is(err, errSyncRefused) {
		t.Fatalf("A answered C's sync of a channel C is not in: %v", err)
	}
	if _, err := c.fetchFrom(ctx, a.ID(), lastA.CID); err == nil {
		t.Fatal("A served C a record of a channel C is not in")
	}
	t.Logf("%d outsiders (4 refused at the connection, 2 admitted by the gater, 2 members of another channel): %d messages received (RPC publishes, IHAVE IDs and deliveries):%s", len(watchers), received, report())
	if received != 0 {
		t.Fatalf("outsiders received %d messages", received)
	}
}
