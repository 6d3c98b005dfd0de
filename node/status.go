package node

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// Status returns the node's health at a glance: the store, the partners
// online and offline, each channel's sync lag, and recent store errors.
// The node is unhealthy while a store failure happened in the last
// unhealthyFor.
func (n *Node) Status() (*api.Status, error) {
	name, _ := n.profile()
	h := &n.health
	h.mu.Lock()
	start, total := h.start, h.total
	h.mu.Unlock()
	st := &api.Status{
		Healthy: true, ID: n.self.String(), Name: name, Version: Version,
		Started:       start.UTC().Format(time.RFC3339),
		UptimeSeconds: int64(time.Since(start).Seconds()),
		Store: api.StoreStatus{
			Path:      filepath.Join(n.cfg.Home, DataDir),
			Encrypted: n.cfg.EncryptionKeyFile != "",
			Records:   n.store.Count(),
			Bytes:     n.store.Size(),
			Errors:    total,
		},
		Peers:        api.PeersStatus{Connected: []api.PeerRef{}, Offline: []api.PeerRef{}},
		Reachability: n.Reachability(),
		Channels:     []api.ChannelLag{},
		RecentErrors: []api.StatusError{},
	}
	recent := h.recent()
	for _, e := range recent {
		st.RecentErrors = append(st.RecentErrors, api.StatusError{Time: e.at.UTC().Format(time.RFC3339), Op: e.op, Message: e.msg})
	}
	if len(recent) > 0 && time.Since(recent[0].at) < unhealthyFor {
		st.Healthy = false
		st.Problems = append(st.Problems, fmt.Sprintf("the store failed %s ago (%s: %s); records received meanwhile are not held until it works again and sync brings them",
			time.Since(recent[0].at).Round(time.Second), recent[0].op, recent[0].msg))
	}

	online := func(p peer.ID) bool { return n.host.Network().Connectedness(p) == network.Connected }
	ref := func(p peer.ID) api.PeerRef { return api.PeerRef{ID: p.String(), Name: n.gov.name(p)} }
	seen := map[peer.ID]bool{}
	for _, ch := range n.gov.joined() {
		snap, ok := n.gov.channel(ch)
		if !ok {
			continue
		}
		own, err := n.store.Head(ch, n.self)
		if err != nil {
			// Reported, not counted: a status poll must not keep the
			// node unhealthy by itself.
			st.Healthy = false
			st.Problems = append(st.Problems, fmt.Sprintf("the store cannot read this node's head in channel %s: %v", snap.name, err))
		}
		cl := api.ChannelLag{ID: ch.String(), Name: snap.name, Members: len(snap.members), OwnHead: own, Partners: []api.PartnerSync{}}
		syncs := n.sync.statusOf(ch)
		for _, p := range snap.members {
			if p == n.self {
				continue
			}
			ps := api.PartnerSync{PeerRef: ref(p), Online: online(p)}
			if at, ok := n.offline.Load(p); ok && !ps.Online {
				ps.OfflineSince = at.(time.Time).UTC().Format(time.RFC3339)
			}
			if s, ok := syncs[p]; ok {
				ps.Behind, ps.Error = s.behind, s.err
				if !s.last.IsZero() {
					ps.Last = s.last.UTC().Format(time.RFC3339)
				}
			}
			cl.Lag = max(cl.Lag, ps.Behind)
			cl.Partners = append(cl.Partners, ps)
			if !seen[p] {
				seen[p] = true
				if ps.Online {
					st.Peers.Connected = append(st.Peers.Connected, ps.PeerRef)
				} else {
					st.Peers.Offline = append(st.Peers.Offline, ps.PeerRef)
				}
			}
		}
		st.Channels = append(st.Channels, cl)
	}
	byID := func(a, b api.PeerRef) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(st.Peers.Connected, byID)
	slices.SortFunc(st.Peers.Offline, byID)
	slices.SortFunc(st.Channels, func(a, b api.ChannelLag) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return st, nil
}
