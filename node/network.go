package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// This file is how partners reach each other across the internet (design
// section "Network"): AutoNAT v2 tells whether the node's addresses are
// reachable from outside, circuit relay v2 carries partners behind NAT
// through a partner with a public address, DCUtR (enabled on the host)
// upgrades a relayed connection to a direct one where the NATs allow it,
// and a Kademlia DHT among partners finds a partner whose address changed.

// DHTPrefix is the protocol prefix of the partners' DHT: never the public
// IPFS DHT's /ipfs.
const DHTPrefix = "/sangsaeng"

// relayService returns the options of the relay this node runs for its
// partners when relay.enabled is set.
//
// A relayed connection carries gossip and sync like a direct one, so it
// has no data or time limit: relay v2's defaults (128 KiB and 2 minutes)
// would cut a catch-up short, and a limited connection cannot carry
// gossipsub at all (go-libp2p-pubsub opens its streams without
// network.WithAllowLimitedConn). What bounds the relay instead: only
// partners may reserve or be connected through it (relayACL; the gater
// refuses everyone else before that), a slot count, a circuit count per
// partner, and the resource manager's limits per peer.
func (n *Node) relayService() []relayv2.Option {
	res := relayv2.DefaultResources()
	res.Limit = nil
	res.MaxReservations = n.cfg.Relay.MaxReservations
	res.MaxCircuits = n.cfg.Relay.MaxCircuits
	// Partners behind one carrier NAT share an IP address: only
	// partners may reserve at all, so the per-IP limit is the total.
	res.MaxReservationsPerIP = n.cfg.Relay.MaxReservations
	return []relayv2.Option{
		relayv2.WithResources(res),
		relayv2.WithACL(relayACL{n}),
		// Partners may use any address of the relay that is not loopback:
		// a relay on a company's private network serves its campus too.
		relayv2.WithReservationAddressFilter(func(a ma.Multiaddr) bool {
			return !manet.IsIPLoopback(a) && !manet.IsIPUnspecified(a)
		}),
	}
}

// relayACL lets only partners reserve a slot or be connected through the
// relay: peers that share a channel with this node, or that its operator
// added.
type relayACL struct{ n *Node }

func (a relayACL) partner(p peer.ID) bool {
	return a.n.gov.isPartner(p) || a.n.partners.manual(p)
}

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	ok := a.partner(p)
	if !ok {
		a.n.log.Info("relay: refused a reservation of a peer that is not a partner", "peer", p)
	}
	return ok
}

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	ok := a.partner(src) && a.partner(dest)
	if !ok {
		a.n.log.Info("relay: refused a circuit between peers that are not both partners", "from", src, "to", dest)
	}
	return ok
}

// relaysNS is the store namespace of the relays learned from invite codes.
const relaysNS = "relays"

// relayKeeper keeps a slot (a reservation) at each relay the node uses,
// while AutoNAT has not confirmed that the node is reachable directly, and
// gives the circuit addresses partners reach it through.
//
// go-libp2p's autorelay is not used: it starts looking for relays only when
// AutoNAT v1 concludes the node is private, and v1 tests public addresses
// only, so a node whose addresses are all private (every node behind NAT
// without port mapping, and the namespace test's) never gets a verdict,
// and it picks relays among any peers. Here the relays are the ones the
// operator or an invite named, reserved with go-libp2p's relay v2 client.
type relayKeeper struct {
	n    *Node
	wake chan struct{}

	mu     sync.Mutex
	relays map[peer.ID]*relayState
}

// relayState is one relay the node uses.
type relayState struct {
	info     peer.AddrInfo
	source   string // "config" or "invite"
	via      []ma.Multiaddr
	expires  time.Time // of the reservation; zero without one
	err      error     // of the last attempt
	tried    time.Time
	failures int
}

// newRelayKeeper returns the keeper of the relays in the config and those
// stored from invites.
func newRelayKeeper(n *Node) (*relayKeeper, error) {
	k := &relayKeeper{n: n, wake: make(chan struct{}, 1), relays: map[peer.ID]*relayState{}}
	for _, s := range n.cfg.Relay.Use {
		ai, _ := peer.AddrInfoFromString(s) // checked by Validate
		k.add(*ai, "config")
	}
	raw, err := n.store.ListMeta(relaysNS)
	if err != nil {
		return nil, err
	}
	for _, v := range raw {
		var addrs []string
		if json.Unmarshal(v, &addrs) != nil {
			continue
		}
		for _, s := range addrs {
			if ai, err := peer.AddrInfoFromString(s); err == nil {
				k.add(*ai, "invite")
			}
		}
	}
	return k, nil
}

// add merges ai into the relays; a relay of the config keeps that source.
func (k *relayKeeper) add(ai peer.AddrInfo, source string) bool {
	if ai.ID == k.n.self {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st, ok := k.relays[ai.ID]
	if !ok {
		st = &relayState{info: peer.AddrInfo{ID: ai.ID}, source: source}
		k.relays[ai.ID] = st
	}
	for _, a := range ai.Addrs {
		if !slices.ContainsFunc(st.info.Addrs, a.Equal) {
			st.info.Addrs = append(st.info.Addrs, a)
		}
	}
	return !ok
}

// has reports whether p is a relay the node uses.
func (k *relayKeeper) has(p peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.relays[p]
	return ok
}

// configured reports whether p is a relay of relay.use: the gater admits
// it whatever it shares. A relay named by an invite code is admitted only
// while it is a partner: an invite is not signed, and whoever passed it on
// could have added a peer of their own.
func (k *relayKeeper) configured(p peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, ok := k.relays[p]
	return ok && st.source == "config"
}

// learn keeps the relays an invite code names, in the store, and has the
// keeper reserve a slot at them.
func (k *relayKeeper) learn(relays []peer.AddrInfo) error {
	for _, ai := range relays {
		if !k.n.gov.isPartner(ai.ID) && !k.n.partners.manual(ai.ID) {
			// A relay serves only its partners: this one would refuse.
			k.n.log.Warn("the invite names a relay that shares no channel with this node; not using it", "relay", ai.ID)
			continue
		}
		k.add(ai, "invite")
		k.mu.Lock()
		st := k.relays[ai.ID]
		var addrs []string
		for _, a := range st.info.Addrs {
			addrs = append(addrs, a.String()+"/p2p/"+ai.ID.String())
		}
		k.mu.Unlock()
		raw, _ := json.Marshal(addrs) // strings always marshal
		if err := k.n.store.PutMeta(relaysNS, string(ai.ID), raw); err != nil {
			return err
		}
	}
	k.retrySoon()
	return nil
}

// retrySoon has the keeper try every relay again now, failed ones too: a
// relay that refused this node before it was a partner takes it now.
func (k *relayKeeper) retrySoon() {
	k.mu.Lock()
	for _, st := range k.relays {
		st.tried = time.Time{}
	}
	k.mu.Unlock()
	k.poke()
}

func (k *relayKeeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// renewBefore is how long before a reservation expires the keeper renews it.
const renewBefore = 5 * time.Minute

// run keeps the reservations until the node closes.
func (k *relayKeeper) run() {
	defer k.n.wg.Done()
	sub, err := k.n.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged), eventbus.BufSize(256))
	if err != nil {
		k.n.log.Warn("relays: cannot follow connections; slots are checked every 15 s only", "err", err)
	} else {
		defer sub.Close()
	}
	var events <-chan any
	if sub != nil {
		events = sub.Out()
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		k.reserveAll()
	wait:
		for {
			select {
			case <-k.n.ctx.Done():
				return
			case <-tick.C:
				break wait
			case <-k.wake:
				break wait
			case e := <-events:
				ev, _ := e.(event.EvtPeerConnectednessChanged)
				if ev.Connectedness == network.Connected || !k.has(ev.Peer) {
					continue // another peer's: keep waiting
				}
				k.mu.Lock()
				if st := k.relays[ev.Peer]; st != nil {
					st.expires = time.Time{} // the relay drops a slot with its connection
				}
				k.mu.Unlock()
				k.n.log.Info("relay: lost the connection to a relay; reserving again", "relay", ev.Peer)
				// Let the network settle (an address change) before trying.
				select {
				case <-k.n.ctx.Done():
					return
				case <-time.After(time.Second):
				}
				break wait
			}
		}
	}
}

// reserveAll reserves or renews a slot at each relay that needs it.
func (k *relayKeeper) reserveAll() {
	if k.n.publiclyReachable() {
		return // partners dial it directly
	}
	k.mu.Lock()
	var due []peer.AddrInfo
	now := time.Now()
	for id, st := range k.relays {
		connected := k.n.host.Network().Connectedness(id) == network.Connected
		if connected && st.expires.After(now.Add(renewBefore)) {
			continue
		}
		// Back off after failures: 2 s, 4 s, … up to a minute.
		if st.failures > 0 && now.Sub(st.tried) < min(time.Minute, time.Second<<min(st.failures, 6)) {
			continue
		}
		due = append(due, peer.AddrInfo{ID: id, Addrs: slices.Clone(st.info.Addrs)})
	}
	k.mu.Unlock()
	for _, ai := range due {
		ctx, cancel := context.WithTimeout(k.n.ctx, 15*time.Second)
		k.n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		k.n.clearBackoff(ai.ID) // the keeper paces its own attempts
		rsvp, err := client.Reserve(ctx, k.n.host, ai)
		cancel()
		k.mu.Lock()
		st := k.relays[ai.ID]
		st.tried = time.Now()
		st.err = err
		if err != nil {
			st.failures++
			st.expires = time.Time{}
			k.mu.Unlock()
			k.n.log.Info("relay: no slot at a relay", "relay", ai.ID, "err", err)
			continue
		}
		st.failures = 0
		st.expires = rsvp.Expiration
		st.via = k.n.relayVia(ai.ID, st.info.Addrs, rsvp.Addrs)
		k.mu.Unlock()
		k.n.host.ConnManager().Protect(ai.ID, "sangsaeng-relay")
		k.n.log.Info("relay: holding a slot", "relay", ai.ID, "until", rsvp.Expiration.Format(time.RFC3339))
	}
}

// relayVia returns the addresses of relay r to build circuit addresses on:
// those the connection to it uses and the relay vouches for, and the ones
// configured, TCP and QUIC alike, without duplicates.
func (n *Node) relayVia(r peer.ID, configured, vouched []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	addOne := func(a ma.Multiaddr) {
		a, _ = ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_P2P })
		if len(a) == 0 || manet.IsIPUnspecified(a) || slices.ContainsFunc(out, a.Equal) {
			return
		}
		out = append(out, a)
	}
	for _, c := range n.host.Network().ConnsToPeer(r) {
		if !isCircuit(c.RemoteMultiaddr()) {
			addOne(c.RemoteMultiaddr())
		}
	}
	for _, a := range vouched {
		addOne(a)
	}
	for _, a := range configured {
		addOne(a)
	}
	return out
}

// circuitAddrs are the addresses partners reach this node through its
// relays: RELAY-ADDR/p2p/RELAY/p2p-circuit, for each slot it holds.
func (k *relayKeeper) circuitAddrs() []ma.Multiaddr {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	var out []ma.Multiaddr
	for id, st := range k.relays {
		if !st.expires.After(now) {
			continue
		}
		for _, a := range st.via {
			c, err := ma.NewMultiaddr(a.String() + "/p2p/" + id.String() + "/p2p-circuit")
			if err == nil {
				out = append(out, c)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// addrsFactory adds the circuit addresses to the host's own: identify tells
// them to partners (the host looks at its addresses every 5 s), and
// invites carry them (Invite adds them at once).
func (n *Node) addrsFactory(addrs []ma.Multiaddr) []ma.Multiaddr {
	if n.relays == nil {
		return addrs
	}
	return append(addrs, n.relays.circuitAddrs()...)
}

// isCircuit reports whether a is a relayed address.
func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// relaysOf returns the relays named by circuit addresses among addrs, with
// the relays' own addresses.
func relaysOf(addrs []ma.Multiaddr) []peer.AddrInfo {
	byID := map[peer.ID]*peer.AddrInfo{}
	var order []peer.ID
	for _, a := range addrs {
		relay, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
		if !isCircuit(a) || len(relay) == 0 {
			continue
		}
		ai, err := peer.AddrInfoFromP2pAddr(relay)
		if err != nil || len(ai.Addrs) == 0 {
			continue
		}
		cur, ok := byID[ai.ID]
		if !ok {
			cur = &peer.AddrInfo{ID: ai.ID}
			byID[ai.ID] = cur
			order = append(order, ai.ID)
		}
		for _, x := range ai.Addrs {
			if !slices.ContainsFunc(cur.Addrs, x.Equal) {
				cur.Addrs = append(cur.Addrs, x)
			}
		}
	}
	out := make([]peer.AddrInfo, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out
}

// confirmedAddrs are the host's addresses as AutoNAT v2 judged them.
func (n *Node) confirmedAddrs() (reachable, unreachable, unknown []ma.Multiaddr) {
	type confirmer interface {
		ConfirmedAddrs() (reachable, unreachable, unknown []ma.Multiaddr)
	}
	if h, ok := n.host.(confirmer); ok {
		return h.ConfirmedAddrs()
	}
	return nil, nil, nil
}

// publiclyReachable reports whether AutoNAT confirmed an address of the
// node that partners can dial from the internet.
func (n *Node) publiclyReachable() bool {
	r, _, _ := n.confirmedAddrs()
	return len(r) > 0
}

// Reachability says how partners reach the node: AutoNAT's verdict on its
// addresses, the relays it uses and its addresses through them.
func (n *Node) Reachability() api.Reachability {
	reachable, unreachable, _ := n.confirmedAddrs()
	out := api.Reachability{State: "unknown", Public: []string{}, Relays: []api.RelayRef{}, RelayAddrs: []string{}, RelayService: n.cfg.Relay.Enabled}
	switch {
	case len(reachable) > 0:
		out.State = "public"
	case len(unreachable) > 0:
		out.State = "private"
	}
	for _, a := range reachable {
		out.Public = append(out.Public, a.String())
	}
	if n.relays == nil {
		return out
	}
	for _, a := range n.relays.circuitAddrs() {
		out.RelayAddrs = append(out.RelayAddrs, a.String()+"/p2p/"+n.self.String())
	}
	n.relays.mu.Lock()
	for id, st := range n.relays.relays {
		ref := api.RelayRef{ID: id.String(), Source: st.source, Connected: n.host.Network().Connectedness(id) == network.Connected}
		if st.expires.After(time.Now()) {
			ref.Reserved = true
			ref.Expires = st.expires.UTC().Format(time.RFC3339)
		}
		if st.err != nil && !ref.Reserved {
			ref.Error = st.err.Error()
		}
		out.Relays = append(out.Relays, ref)
	}
	n.relays.mu.Unlock()
	for i := range out.Relays {
		if id, err := peer.Decode(out.Relays[i].ID); err == nil {
			out.Relays[i].Name = n.gov.name(id)
		}
	}
	sort.Slice(out.Relays, func(i, j int) bool { return out.Relays[i].ID < out.Relays[j].ID })
	if out.State != "public" && len(out.RelayAddrs) > 0 {
		out.State = "relayed"
	}
	return out
}

// newDHT starts the partners' Kademlia DHT: its own protocol prefix, a
// routing table holding only peers the gater admits (partners and relays),
// no provider or value records: it only finds partners' addresses. Every
// node answers (server mode): partners are few and all of them help.
func (n *Node) newDHT() (*dht.IpfsDHT, error) {
	return dht.New(n.ctx, n.host,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(DHTPrefix),
		dht.DisableProviders(),
		dht.DisableValues(),
		dht.RoutingTableFilter(func(_ interface{}, p peer.ID) bool { return n.gater.allowed(p) }),
		dht.QueryFilter(func(_ interface{}, ai peer.AddrInfo) bool { return n.gater.allowed(ai.ID) }),
		dht.BootstrapPeersFunc(n.dhtBootstrap),
	)
}

// dhtBootstrap is whom the DHT asks first when its table is empty: the
// relays and the partners in the address book.
func (n *Node) dhtBootstrap() []peer.AddrInfo {
	var out []peer.AddrInfo
	if n.relays != nil {
		n.relays.mu.Lock()
		for id, st := range n.relays.relays {
			out = append(out, peer.AddrInfo{ID: id, Addrs: slices.Clone(st.info.Addrs)})
		}
		n.relays.mu.Unlock()
	}
	for p, e := range n.partners.all() {
		if n.gater.allowed(p) {
			out = append(out, peer.AddrInfo{ID: p, Addrs: parseAddrs(e.dialAddrs())})
		}
	}
	return out
}

// findPartner asks the partners' DHT for p's addresses, for a partner the
// addresses the node knows no longer reach, and keeps what it finds.
func (n *Node) findPartner(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
	if n.dht == nil {
		return peer.AddrInfo{}, fmt.Errorf("no DHT")
	}
	ai, err := n.dht.FindPeer(ctx, p)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	if len(ai.Addrs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("the DHT knows %s but no address of it", p)
	}
	return ai, nil
}

// parseAddrs parses the multiaddrs among ss, skipping any that do not.
func parseAddrs(ss []string) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		if a, err := ma.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}
