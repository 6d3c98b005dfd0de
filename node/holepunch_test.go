package node

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/marcopolo/simnet"
)

// TestHolePunch runs real nodes on go-libp2p's simulated network (simnet,
// QUIC only, all in this process; the addresses look public to libp2p but
// no packet leaves the simulation). R is a public relay; A and B are
// partners of R and of each other, each behind a NAT, and B first reaches
// A through A's slot at R.
//
//   - cone: A and B sit behind simnet's SimpleFirewallRouter (a packet gets
//     in only from an address the node has sent to: endpoint-independent
//     mapping, address-dependent filtering). DCUtR punches a hole, the
//     partners end up with direct connections only, and records flow both
//     ways.
//   - symmetric: A and B sit behind symmetricNAT (a new public port for
//     every destination; a packet gets in only on the mapping made for its
//     exact sender). The hole punch fails; the partners stay on the relay
//     and records flow both ways through it.
func TestHolePunch(t *testing.T) {
	t.Run("cone", func(t *testing.T) {
		router := &simnet.SimpleFirewallRouter{}
		pub := func(a *net.UDPAddr) { router.SetAddrPubliclyReachable(a) }
		hn := holePunchNet(t,
			simQUIC(router, pub), simQUIC(router, nil), simQUIC(router, nil),
			"/ip4/2.2.0.1/udp/8000/quic-v1", "/ip4/2.2.0.2/udp/8000/quic-v1")
		a, b := hn.a, hn.b

		direct := func(x, y *Node) bool {
			return slices.ContainsFunc(x.host.Network().ConnsToPeer(y.ID()), func(c network.Conn) bool { return !isCircuit(c.RemoteMultiaddr()) })
		}
		deadline := time.Now().Add(30 * time.Second)
		for !direct(a, b) || !direct(b, a) {
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s, no direct connection: A: %v; B: %v; hole punch events A: %v; B: %v",
					conns(a, b), conns(b, a), hn.ta.types(), hn.tb.types())
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("cone: direct connection %s after the relayed one (A: %v; B: %v)",
			time.Since(hn.relayedAt).Round(time.Millisecond), conns(a, b), conns(b, a))
		for !onlyDirect(a, b) || !onlyDirect(b, a) {
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !onlyDirect(a, b) || !onlyDirect(b, a) {
			t.Errorf("after 30 s the relayed connection is still open beside the direct one: A: %v; B: %v",
				conns(a, b), conns(b, a))
		} else {
			t.Logf("cone: path direct; %s from the relayed connection to direct only",
				time.Since(hn.relayedAt).Round(time.Millisecond))
		}
		if !hn.punched(true) {
			t.Errorf("no successful hole punch traced: A: %v; B: %v", hn.ta.types(), hn.tb.types())
		}
		t.Logf("cone: hole punch events A: %v; B: %v", hn.ta.types(), hn.tb.types())
		hn.exchange(t, "directly")
		if !direct(a, b) || !direct(b, a) {
			t.Fatalf("the direct connection went away: A: %v; B: %v", conns(a, b), conns(b, a))
		}
	})

	t.Run("symmetric", func(t *testing.T) {
		nat := &symmetricNAT{}
		// Inside addresses look public, as libp2p's hole punching wants
		// an address of its own to offer; nothing from outside reaches
		// them, only the NATs' mappings are reachable.
		nat.behind("2.2.0.1:8000", "3.3.0.1")
		nat.behind("2.2.0.2:8000", "3.3.0.2")
		hn := holePunchNet(t,
			simQUIC(nat, nil), simQUIC(nat, nil), simQUIC(nat, nil),
			"/ip4/2.2.0.1/udp/8000/quic-v1", "/ip4/2.2.0.2/udp/8000/quic-v1")
		a, b := hn.a, hn.b

		// DCUtR runs on the relayed connection; wait for it to give up,
		// and at least 10 s, then check that nothing direct came of it.
		waitFor(t, "a failed hole punch", 60*time.Second, func() bool {
			return hn.ta.count(holepunch.EndHolePunchEvtT)+hn.tb.count(holepunch.EndHolePunchEvtT) > 0
		})
		if d := 10*time.Second - time.Since(hn.relayedAt); d > 0 {
			time.Sleep(d)
		}
		if hn.punched(true) {
			t.Fatalf("a hole punch through symmetric NATs succeeded: A: %v; B: %v", hn.ta.types(), hn.tb.types())
		}
		if !onlyRelayed(a, b) || !onlyRelayed(b, a) {
			t.Fatalf("A and B are not only relayed: A: %v; B: %v", conns(a, b), conns(b, a))
		}
		t.Logf("symmetric: path relayed %s after the relayed connection (hole punch events A: %v; B: %v; NAT mappings %d, packets dropped %d)",
			time.Since(hn.relayedAt).Round(time.Millisecond), hn.ta.types(), hn.tb.types(), nat.mappings(), nat.dropped.Load())
		hn.exchange(t, "through the relay")
		if !onlyRelayed(a, b) || !onlyRelayed(b, a) {
			t.Fatalf("A and B are not only relayed: A: %v; B: %v", conns(a, b), conns(b, a))
		}
	})
}

// hpNet is a relay R and its partners A and B, with B joined to A's
// channel ch through R.
type hpNet struct {
	r, a, b   *Node
	ta, tb    *hpTracer
	ch        cid.Cid
	relayedAt time.Time
	publish   func(t *testing.T, from, to *Node, text string)
}

// holePunchNet starts R (public, 1.2.0.1:8000, the relay), A and B (on
// the given QUIC addresses, reachability forced private, hole punching
// traced), links R with A and with B, waits for A's slot at R and has B
// join A's channel with A's invite. It returns once A and B have a
// relayed connection.
func holePunchNet(t *testing.T, rq, aq, bq libp2p.Option, aAddr, bAddr string) *hpNet {
	t.Helper()
	const rAddr = "/ip4/1.2.0.1/udp/8000/quic-v1"
	r := startSimNode(t, "R", rAddr, func(c *Config) { c.Relay.Enabled = true }, rq,
		libp2p.ForceReachabilityPublic())
	relay := rAddr + "/p2p/" + r.ID().String()
	ta, tb := &hpTracer{}, &hpTracer{}
	a := startSimNode(t, "A", aAddr, func(c *Config) { c.Relay.Use = []string{relay} }, aq,
		libp2p.ForceReachabilityPrivate(), libp2p.EnableHolePunching(holepunch.WithTracer(ta)))
	b := startSimNode(t, "B", bAddr, nil, bq,
		libp2p.ForceReachabilityPrivate(), libp2p.EnableHolePunching(holepunch.WithTracer(tb)))

	link(t, r, a, "r-a")
	link(t, r, b, "r-b")
	waitFor(t, "A's slot at R", 30*time.Second, func() bool { return len(a.Reachability().RelayAddrs) > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "a-b", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, err := a.Invite(ctx, ch, b.ID())
	if err != nil {
		t.Fatal(err)
	}
	// B joins through the relay only: a dial of B's to A's direct address
	// would open B's firewall to A, and DCUtR's first, plain direct dial
	// would then get through without any hole punching.
	b.gater.noDirect.Store(a.ID(), true)
	if _, err := b.Join(ctx, code); err != nil {
		t.Fatalf("B joins A's channel: %v", err)
	}
	b.gater.noDirect.Delete(a.ID())
	relayed := func() bool {
		for _, c := range b.host.Network().ConnsToPeer(a.ID()) {
			if isCircuit(c.RemoteMultiaddr()) {
				return true
			}
		}
		return false
	}
	// B joined through R (A is behind its NAT), so the relayed connection
	// exists by now, unless a hole punch already replaced it.
	hn := &hpNet{r: r, a: a, b: b, ta: ta, tb: tb, ch: ch, relayedAt: time.Now()}
	if !relayed() && !hn.punched(true) {
		t.Fatalf("B joined A without a relayed connection: %v", conns(b, a))
	}
	t.Logf("B joined A; B's connections to A: %v", conns(b, a))
	hn.publish = func(t *testing.T, from, to *Node, text string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := from.Publish(ctx, ch, "note", map[string]any{"text": text}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the record "+text, 30*time.Second, func() bool { return has(to, s.CID) })
	}
	return hn
}

// exchange publishes a record on A and one on B, and waits for each to
// reach the other.
func (hn *hpNet) exchange(t *testing.T, how string) {
	t.Helper()
	hn.publish(t, hn.a, hn.b, "A to B "+how)
	hn.publish(t, hn.b, hn.a, "B to A "+how)
}

// punched reports whether A's or B's tracer saw a hole punch end with
// the given success.
func (hn *hpNet) punched(success bool) bool {
	return hn.ta.ended(success) || hn.tb.ended(success)
}

// startSimNode starts a node listening on the simulated QUIC address
// listen, with extra host options (the simulated transport first).
func startSimNode(t *testing.T, name, listen string, mod func(*Config), hopts ...libp2p.Option) *Node {
	t.Helper()
	cfg, err := Init(t.TempDir(), InitOptions{Name: name, Listen: []string{listen}, API: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MDNS = false
	if mod != nil {
		mod(cfg)
	}
	log := slog.New(slog.NewTextHandler(&logLines{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("company", name)
	// No AutoNAT v2: its dial-backs go from a host of libp2p's own, on real
	// sockets, not the simulation's, and would send packets to the
	// simulated public addresses.
	n, err := New(cfg, WithLogger(log), WithoutNATPortMap(), withoutAutoNATv2(), WithHostOptions(hopts...))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// simQUIC has the node's QUIC transport use simnet connections on router,
// as go-libp2p's holepunch tests do. listening, if set, is told each
// address the node listens on before it joins the router.
func simQUIC(router simnet.Router, listening func(*net.UDPAddr)) libp2p.Option {
	sel := &simSourceIP{}
	return libp2p.QUICReuse(quicreuse.NewConnManager,
		quicreuse.OverrideSourceIPSelector(func() (quicreuse.SourceIPSelector, error) { return sel, nil }),
		quicreuse.OverrideListenUDP(func(_ string, addr *net.UDPAddr) (net.PacketConn, error) {
			sel.ip.Store(&addr.IP)
			if listening != nil {
				listening(addr)
			}
			c := simnet.NewSimConn(addr)
			c.SetUpPacketReceiver(router)
			router.AddNode(addr, c)
			return c, nil
		}))
}

// simSourceIP answers quicreuse's question about the source IP with the
// simulated address the node listens on.
type simSourceIP struct{ ip atomic.Pointer[net.IP] }

func (s *simSourceIP) PreferredSourceIPForDestination(*net.UDPAddr) (net.IP, error) {
	return *s.ip.Load(), nil
}

// symmetricNAT is a simnet router with symmetric NATs (endpoint-dependent
// mapping and filtering) in front of some nodes. A packet from an inside
// address to a remote leaves from the NAT's public IP on a port of the
// mapping for that exact (inside, remote) pair, made with a new random
// port on first use; a packet to a NAT's public address gets in only on a
// mapping made for its sender, and is delivered to the inside address.
// Inside addresses are not reachable from anywhere. Every other node is
// public and reachable by its own address.
type symmetricNAT struct {
	mu      sync.Mutex
	natIP   map[string]net.IP                // inside address -> its NAT's public IP
	inside  map[string]simnet.PacketReceiver // inside address -> node
	public  map[string]simnet.PacketReceiver // public address -> node
	out     map[[2]string]*net.UDPAddr       // (inside, remote) -> public address
	in      map[string]natMapping            // public address -> mapping
	ports   map[string]map[int]bool          // NAT IP -> ports in use
	dropped atomic.Int64
}

type natMapping struct {
	inside *net.UDPAddr
	remote string
}

// behind puts the node at inside ("ip:port") behind a NAT with public IP
// natIP. Call it before the node joins the router.
func (r *symmetricNAT) behind(inside, natIP string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.natIP == nil {
		r.natIP = map[string]net.IP{}
	}
	r.natIP[inside] = net.ParseIP(natIP)
}

func (r *symmetricNAT) AddNode(addr net.Addr, node simnet.PacketReceiver) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inside == nil {
		r.inside, r.public = map[string]simnet.PacketReceiver{}, map[string]simnet.PacketReceiver{}
		r.out, r.in, r.ports = map[[2]string]*net.UDPAddr{}, map[string]natMapping{}, map[string]map[int]bool{}
	}
	if _, ok := r.natIP[addr.String()]; ok {
		r.inside[addr.String()] = node
	} else {
		r.public[addr.String()] = node
	}
}

func (r *symmetricNAT) RecvPacket(p *simnet.Packet) {
	r.mu.Lock()
	from := p.From.String()
	if ip, ok := r.natIP[from]; ok {
		key := [2]string{from, p.To.String()}
		m := r.out[key]
		if m == nil {
			used := r.ports[ip.String()]
			if used == nil {
				used = map[int]bool{}
				r.ports[ip.String()] = used
			}
			port := 20000 + rand.IntN(40000)
			for used[port] {
				port = 20000 + rand.IntN(40000)
			}
			used[port] = true
			m = &net.UDPAddr{IP: ip, Port: port}
			r.out[key] = m
			insideAddr, _ := net.ResolveUDPAddr("udp", from)
			r.in[m.String()] = natMapping{inside: insideAddr, remote: key[1]}
		}
		p.From = m
	}
	var dst simnet.PacketReceiver
	to := p.To.String()
	if node, ok := r.public[to]; ok {
		dst = node
	} else if m, ok := r.in[to]; ok && m.remote == p.From.String() {
		p.To = m.inside
		dst = r.inside[m.inside.String()]
	}
	r.mu.Unlock()
	if dst == nil {
		r.dropped.Add(1)
		return
	}
	dst.RecvPacket(p)
}

// mappings returns how many NAT mappings exist.
func (r *symmetricNAT) mappings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.out)
}

var _ simnet.Router = &symmetricNAT{}

// hpTracer keeps a node's hole punching events.
type hpTracer struct {
	mu   sync.Mutex
	evts []*holepunch.Event
}

func (tr *hpTracer) Trace(e *holepunch.Event) {
	tr.mu.Lock()
	tr.evts = append(tr.evts, e)
	tr.mu.Unlock()
}

func (tr *hpTracer) count(typ string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, e := range tr.evts {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// ended reports whether a hole punch ended with the given success.
func (tr *hpTracer) ended(success bool) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, e := range tr.evts {
		if ev, ok := e.Evt.(*holepunch.EndHolePunchEvt); ok && ev.Success == success {
			return true
		}
	}
	return false
}

// types lists the events' types, with the end's outcome.
func (tr *hpTracer) types() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var s []string
	for _, e := range tr.evts {
		switch ev := e.Evt.(type) {
		case *holepunch.EndHolePunchEvt:
			s = append(s, fmt.Sprintf("%s(success=%t %s)", e.Type, ev.Success, ev.Error))
		case *holepunch.DirectDialEvt:
			s = append(s, fmt.Sprintf("%s(success=%t %s)", e.Type, ev.Success, ev.Error))
		default:
			s = append(s, e.Type)
		}
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// onlyDirect reports whether a has a connection to b and none of them is
// relayed.
func onlyDirect(a, b *Node) bool {
	cs := a.host.Network().ConnsToPeer(b.ID())
	for _, c := range cs {
		if isCircuit(c.RemoteMultiaddr()) {
			return false
		}
	}
	return len(cs) > 0
}

// conns lists the remote addresses of a's connections to b.
func conns(a, b *Node) []string {
	var out []string
	for _, c := range a.host.Network().ConnsToPeer(b.ID()) {
		out = append(out, c.RemoteMultiaddr().String())
	}
	return out
}
