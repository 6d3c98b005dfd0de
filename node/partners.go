package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sangsaeng/sangsaeng/store"
)

// partnersNS is the store namespace of the address book.
const partnersNS = "partners"

// partnerEntry is one address-book entry as stored.
type partnerEntry struct {
	Name string `json:"name,omitempty"`
	// Addrs are the addresses the operator or an invite gave: they stay
	// until the operator removes them. (Entries stored before Learned
	// existed hold learned addresses here too, and keep them.)
	Addrs []string `json:"addrs"`
	// Learned are the addresses the partner itself announced last, relay
	// addresses among them: the listen addresses of its identify message
	// (EvtPeerIdentificationCompleted.ListenAddrs), unsigned, sent by the
	// partner over the authenticated connection. go-libp2p v0.51.0's
	// identify checks the signed peer record sent beside them and puts
	// the record's addresses in the peerstore, but keeps the record
	// nowhere (not in the certified address book); the node reads only
	// its seq (restarts). They are replaced by the next announcement,
	// never merged into Addrs.
	Learned []string `json:"learned,omitempty"`
	// Manual marks a partner the operator added by hand (`sangsaeng
	// partners add`): the gater admits it whatever channels it shares.
	// An inviter's entry is not manual: it is admitted while it shares
	// a channel with the node, like any member.
	// Entries the node learned by itself (learnAddrs) only keep addresses,
	// and an entry stored before this field existed counts as learned.
	Manual bool `json:"manual,omitempty"`
}

// partnerBook is the address book: partners the operator added, the
// inviters of channels the node joined, and the addresses of the members
// it connected to, kept in the store and dialled on start.
type partnerBook struct {
	s  *store.Store
	mu sync.RWMutex
	m  map[peer.ID]partnerEntry
	// restarts follows partners' incarnations, in memory only.
	restarts restarts
}

func loadPartners(s *store.Store) (*partnerBook, error) {
	raw, err := s.ListMeta(partnersNS)
	if err != nil {
		return nil, err
	}
	b := &partnerBook{s: s, m: map[peer.ID]partnerEntry{}}
	for k, v := range raw {
		id, err := peer.IDFromBytes([]byte(k))
		if err != nil {
			continue
		}
		var e partnerEntry
		if json.Unmarshal(v, &e) == nil {
			b.m[id] = e
		}
	}
	return b, nil
}

// dialAddrs are the addresses to dial the partner at: the given ones, then
// the learned ones.
func (e partnerEntry) dialAddrs() []string {
	out := slices.Clone(e.Addrs)
	for _, a := range e.Learned {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func (b *partnerBook) has(p peer.ID) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.m[p]
	return ok
}

// manual reports whether the operator added p (see partnerEntry.Manual).
func (b *partnerBook) manual(p peer.ID) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.m[p].Manual
}

func (b *partnerBook) all() map[peer.ID]partnerEntry {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make(map[peer.ID]partnerEntry, len(b.m))
	for k, v := range b.m {
		out[k] = v
	}
	return out
}

func (b *partnerBook) put(p peer.ID, e partnerEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.s.PutMeta(partnersNS, string(p), raw); err != nil {
		return err
	}
	b.mu.Lock()
	b.m[p] = e
	b.mu.Unlock()
	return nil
}

func (b *partnerBook) remove(p peer.ID) error {
	if err := b.s.DeleteMeta(partnersNS, string(p)); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.m, p)
	b.mu.Unlock()
	return nil
}

// AddPartner adds p to the address book as a partner the operator chose
// (merging addresses, keeping the name unless a new one is given), which
// the gater admits whatever channels it shares, and dials it in the
// background.
func (n *Node) AddPartner(ctx context.Context, p peer.ID, addrs []ma.Multiaddr, name string) error {
	if p == n.self {
		return fmt.Errorf("partner %s is this node", p)
	}
	if err := n.rememberPartner(p, addrs, name, true); err != nil {
		return err
	}
	n.host.Peerstore().AddAddrs(p, addrs, peerstore.PermanentAddrTTL)
	go func() {
		dctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		defer cancel()
		_ = n.host.Connect(dctx, peer.AddrInfo{ID: p, Addrs: addrs})
	}()
	return nil
}

// rememberPartner merges addrs (and name, when given) into p's address-book
// entry; manual makes the entry admit p whatever channels it shares. An
// entry never loses its manual mark here.
func (n *Node) rememberPartner(p peer.ID, addrs []ma.Multiaddr, name string, manual bool) error {
	n.partners.mu.RLock()
	e := n.partners.m[p]
	n.partners.mu.RUnlock()
	for _, a := range addrs {
		if s := a.String(); !slices.Contains(e.Addrs, s) {
			e.Addrs = append(e.Addrs, s)
		}
	}
	if name != "" {
		e.Name = name
	}
	e.Manual = e.Manual || manual
	return n.partners.put(p, e)
}

// RemovePartner removes p from the address book and, unless it still shares
// a channel with the node, disconnects it.
func (n *Node) RemovePartner(p peer.ID) error {
	if err := n.partners.remove(p); err != nil {
		return err
	}
	n.closeIfStranger(p)
	return nil
}

// closeIfStranger disconnects p when the gater would no longer admit it.
func (n *Node) closeIfStranger(p peer.ID) {
	if !n.gater.allowed(p) {
		n.forgetInDHT(p)
		_ = n.host.Network().ClosePeer(p)
	}
}

// forgetInDHT takes p out of the DHT's routing table: the table admits
// only peers the gater admits, but checks that only when a peer enters.
func (n *Node) forgetInDHT(p peer.ID) {
	if n.dht != nil {
		n.dht.RoutingTable().RemovePeer(p)
	}
}

// closeRemoved disconnects, after a change of ch's membership, the peers
// the change left sharing no channel with this node (and not admitted
// otherwise, see gater): the members removed from ch, or, when this node
// was removed, the members of ch. A removed member that still shares a
// channel stays connected, for that channel.
func (n *Node) closeRemoved(ch cid.Cid) {
	removed := n.gov.removedFrom(ch)
	if len(removed) == 0 {
		return
	}
	selfRemoved := slices.Contains(removed, n.self)
	for _, p := range n.host.Network().Peers() {
		if (selfRemoved || slices.Contains(removed, p)) && !n.gater.allowed(p) {
			n.log.Info("disconnecting a peer that shares no channel any more", "peer", p, "channel", ch)
			n.forgetInDHT(p)
			_ = n.host.Network().ClosePeer(p)
		}
	}
}

// learnAddrs keeps the listen addresses of partners the node connects to in
// the address book, so that after a restart it can reach every member of
// its channels, not only the ones that invited it: a partner's records reach
// it through any member. A learned entry only keeps addresses: it does not
// make the gater admit the peer once it shares no channel with the node.
func (n *Node) learnAddrs() {
	sub, err := n.host.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		n.log.Warn("cannot follow identify events; only invite addresses will be kept", "err", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				ev := e.(event.EvtPeerIdentificationCompleted)
				if !n.gov.isPartner(ev.Peer) {
					continue
				}
				n.dropStaleConns(ev.Peer, ev.Conn, ev.SignedPeerRecord)
				n.dropRelayedConns(ev.Peer, ev.Conn)
				if len(ev.ListenAddrs) == 0 {
					continue
				}
				n.partners.mu.RLock()
				cur, known := n.partners.m[ev.Peer]
				n.partners.mu.RUnlock()
				addrs := make([]string, 0, len(ev.ListenAddrs))
				for _, a := range ev.ListenAddrs {
					addrs = append(addrs, a.String())
				}
				if known && slices.Equal(cur.Learned, addrs) {
					continue
				}
				cur.Learned = addrs
				if err := n.partners.put(ev.Peer, cur); err != nil {
					_ = n.storeFailed(opMeta, err) // logs it
				}
			}
		}
	}()
}

// restarts tells when a partner restarted: the sequence number of the
// signed peer record it sends with identify is a timestamp taken when its
// host starts (or its addresses change), so a higher one means a new
// incarnation.
type restarts struct {
	mu  sync.Mutex
	seq map[peer.ID]uint64
}

// newer records seq for p and reports whether a lower one was known.
func (r *restarts) newer(p peer.ID, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seq == nil {
		r.seq = map[peer.ID]uint64{}
	}
	last, known := r.seq[p]
	if seq <= last {
		return false
	}
	r.seq[p] = seq
	return known
}

// freshConn is how recently a connection must have been opened for its
// identify to show a partner's restart.
const freshConn = 10 * time.Second

// dropStaleConns closes p's other connections once connection c is
// identified as coming from a new incarnation of p. A partner that
// crashed or was killed leaves its connections behind, and over QUIC
// nothing tells the node they are dead until they time out, 30 seconds
// later. Meanwhile libp2p prefers them for new streams (they have the most
// streams open), so a sync with the restarted partner would wait on a dead
// connection, and a partner restarted a few times in that window would
// fill the resource manager's per-peer connection limit and be refused.
// Syncs with p are scheduled again, for those that were reading from the
// connections closed.
func (n *Node) dropStaleConns(p peer.ID, c network.Conn, rec *record.Envelope) {
	if c == nil || rec == nil || c.Stat().Limited {
		return // a relayed connection does not replace a direct one
	}
	r, err := rec.Record()
	if err != nil {
		return
	}
	pr, ok := r.(*peer.PeerRecord)
	if !ok || pr.PeerID != p || !n.partners.restarts.newer(p, pr.Seq) {
		return
	}
	// Identify runs again on a live connection when the partner's
	// addresses change (a push), with a newer record too: only a new
	// connection can show a new incarnation.
	if time.Since(c.Stat().Opened) > freshConn {
		return
	}
	closed := 0
	for _, old := range n.host.Network().ConnsToPeer(p) {
		if old != c {
			n.log.Debug("closing a connection of a partner that restarted", "peer", p, "addr", old.RemoteMultiaddr(), "opened", old.Stat().Opened)
			_ = old.Close()
			closed++
		}
	}
	if closed > 0 {
		n.resync(p)
	}
}

// resync schedules a sync with p in every channel they share: for those
// that were reading from connections just closed.
func (n *Node) resync(p peer.ID) {
	for _, ch := range n.gov.shared(p) {
		n.sync.schedule(p, ch)
	}
}

// dropRelayedConns closes p's relayed connections once a direct one, c,
// is identified (hole punching, or a partner that became reachable): the
// relay is a partner's server and bandwidth, to use only while needed. Its
// relay sets no limit that would close them (see relayService). Gossipsub
// moves its stream to the direct connection; syncs are scheduled again
// for those that were reading from the relayed one.
func (n *Node) dropRelayedConns(p peer.ID, c network.Conn) {
	if c == nil || isCircuit(c.RemoteMultiaddr()) || c.Stat().Limited || c.IsClosed() {
		return
	}
	closed := 0
	for _, old := range n.host.Network().ConnsToPeer(p) {
		if old != c && isCircuit(old.RemoteMultiaddr()) {
			n.log.Info("closing a relayed connection: a direct one is up", "peer", p, "via", old.RemoteMultiaddr())
			_ = old.Close()
			closed++
		}
	}
	if closed > 0 {
		n.resync(p)
	}
}

// clearBackoff forgets the swarm's dial backoff for p: the node paces its
// own dials (dialLoop, the relay keeper), and after an address change the
// swarm's backoff (up to minutes) would refuse the first dials that can
// succeed again.
func (n *Node) clearBackoff(p peer.ID) {
	type backoffer interface{ Backoff() *swarm.DialBackoff }
	if s, ok := n.host.Network().(backoffer); ok {
		s.Backoff().Clear(p)
	}
}

// Dial rounds: every dialEvery, and redialAfter after a partner's last
// connection closed (an address change, a restart); every redialSoon while
// a partner lost in the last lostRecently is still away (an outage that
// heals: TestScale's partition took up to one dialEvery to converge).
const (
	dialEvery    = 30 * time.Second
	redialAfter  = 3 * time.Second
	redialSoon   = 5 * time.Second
	lostRecently = 2 * time.Minute
)

// partnerLostRecently reports whether a partner the node is not connected
// to lost its last connection less than lostRecently ago.
func (n *Node) partnerLostRecently() bool {
	found := false
	n.offline.Range(func(k, _ any) bool {
		p, _ := k.(peer.ID)
		found = n.lostRecently(p)
		return !found
	})
	return found
}

// lostRecently reports whether partner p, not connected, lost its last
// connection less than lostRecently ago.
func (n *Node) lostRecently(p peer.ID) bool {
	v, ok := n.offline.Load(p)
	since, _ := v.(time.Time)
	return ok && time.Since(since) < lostRecently && n.partners.has(p) && n.host.Network().Connectedness(p) != network.Connected
}

// dialLoop keeps the node connected to its partners: the address book and
// the members of its channels whose addresses it knows. A partner that
// none of its known addresses reaches is looked up in the partners' DHT,
// where the partners it is connected to know where it is now.
func (n *Node) dialLoop() {
	defer n.wg.Done()
	sub, err := n.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged), eventbus.BufSize(256))
	var events <-chan any
	if err == nil {
		defer sub.Close()
		events = sub.Out()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	due := time.Now()     // of the next round
	fullDue := time.Now() // of the next round that dials every partner away
	var busy sync.Map     // peer.ID → dialling now
	for {
		select {
		case <-n.ctx.Done():
			return
		case e := <-events:
			ev, _ := e.(event.EvtPeerConnectednessChanged)
			switch {
			case ev.Connectedness == network.Connected:
				n.offline.Delete(ev.Peer)
			case ev.Connectedness == network.NotConnected && n.partners.has(ev.Peer):
				n.offline.Store(ev.Peer, time.Now()) // partners only: the map stays small
			}
			if ev.Connectedness == network.NotConnected && n.partners.has(ev.Peer) && time.Until(due) > redialAfter {
				due = time.Now().Add(redialAfter)
				t.Reset(redialAfter)
			}
			continue
		case <-t.C:
		}
		// A full round every dialEvery; in between, every redialSoon,
		// only the partners lost in the last lostRecently.
		full := !time.Now().Before(fullDue)
		if full {
			fullDue = time.Now().Add(dialEvery)
		}
		next := time.Until(fullDue)
		if n.partnerLostRecently() {
			next = min(next, redialSoon)
		}
		due = time.Now().Add(next)
		for p, e := range n.partners.all() {
			if n.host.Network().Connectedness(p) == network.Connected || !n.gater.allowed(p) {
				continue
			}
			if !full && !n.lostRecently(p) {
				continue
			}
			if _, dup := busy.LoadOrStore(p, true); dup {
				continue
			}
			ai := peer.AddrInfo{ID: p, Addrs: parseAddrs(e.dialAddrs())}
			go func() {
				defer busy.Delete(p)
				n.dialPartner(ai)
			}()
		}
		t.Reset(next)
	}
}

// dialPartner dials a partner at the addresses the node knows, then, where
// none answers, at those the partners' DHT gives.
func (n *Node) dialPartner(ai peer.AddrInfo) {
	n.clearBackoff(ai.ID)
	for _, r := range relaysOf(ai.Addrs) {
		n.clearBackoff(r.ID) // dialling a circuit address dials its relay
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	err := n.host.Connect(ctx, ai)
	cancel()
	if err == nil || n.ctx.Err() != nil {
		return
	}
	n.log.Debug("partner unreachable at its known addresses; asking the DHT", "peer", ai.ID, "err", err)
	ctx, cancel = context.WithTimeout(n.ctx, 20*time.Second)
	defer cancel()
	found, ferr := n.findPartner(ctx, ai.ID)
	if ferr != nil {
		n.log.Debug("partner not found in the DHT", "peer", ai.ID, "err", ferr)
		return
	}
	fresh := slices.DeleteFunc(slices.Clone(found.Addrs), func(a ma.Multiaddr) bool { return slices.ContainsFunc(ai.Addrs, a.Equal) })
	if len(fresh) == 0 {
		return
	}
	if err := n.host.Connect(ctx, peer.AddrInfo{ID: ai.ID, Addrs: fresh}); err != nil {
		n.log.Debug("partner unreachable at the addresses the DHT gave", "peer", ai.ID, "addrs", fresh, "err", err)
		return
	}
	n.metrics.dhtFound.Inc()
	n.log.Info("partner found again at a new address through the DHT", "peer", ai.ID, "addrs", fresh)
}

// gater admits only partners: active members of a channel the node is an
// active member of, partners the operator added to the address book (see
// partnerEntry.Manual), and peers the operator configured (relays,
// bootstrap). A member removed from every channel it shared with the node
// is refused, though the node may have learned its addresses.
type gater struct {
	n     *Node
	extra sync.Map // peer.ID → true
	deny  sync.Map // peer.ID → true: refused whatever else holds (tests' partitions)
	// noDirect: peer.ID → true: reached only through a relay (tests of
	// relaying on loopback, where every address is directly reachable).
	noDirect sync.Map
	// noDial: peer.ID → true: never dialled, though admitted when it
	// dials (tests of who finds whom).
	noDial sync.Map
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func (g *gater) allowed(p peer.ID) bool {
	if _, ok := g.deny.Load(p); ok {
		return false
	}
	if _, ok := g.extra.Load(p); ok {
		return true
	}
	if g.n.relays != nil && g.n.relays.configured(p) {
		return true
	}
	return g.n.partners.manual(p) || g.n.gov.isPartner(p)
}

func (g *gater) InterceptPeerDial(p peer.ID) bool {
	if _, no := g.noDial.Load(p); no {
		return false
	}
	return g.allowed(p)
}

func (g *gater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	_, relayOnly := g.noDirect.Load(p)
	return !relayOnly || isCircuit(a)
}

func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, cm network.ConnMultiaddrs) bool {
	ok := g.allowed(p)
	if _, relayOnly := g.noDirect.Load(p); relayOnly && !isCircuit(cm.RemoteMultiaddr()) {
		ok = false
	}
	if !ok && g.admitDialBack(dir, p) {
		return true
	}
	if !ok {
		g.n.metrics.refused.Inc()
		g.n.log.Debug("connection refused: not a partner", "peer", p, "dir", dir)
	}
	return ok
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// mdnsNotifee dials partners found on the local network.
type mdnsNotifee struct{ n *Node }

func (m *mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.self || !n.gater.allowed(ai.ID) || n.host.Network().Connectedness(ai.ID) == network.Connected {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := n.host.Connect(ctx, ai); err == nil {
		n.log.Info("partner found on the local network", "peer", ai.ID)
	}
}
