package node

import (
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// doubts tells honest reordering from a pattern. A member may forward a
// record whose author this node does not know as a member yet (the change
// that added the author has not reached it): that costs the forwarder
// nothing but a sync. Only a refusal after a sync with the forwarder has
// completed since its previous refusal, a sync that should have taught this
// node what the forwarder knew, counts against it.
type doubts struct {
	mu sync.Mutex
	m  map[syncJob]time.Time // the first refusal not yet explained
}

// refused notes that a record from p in ch was refused for a membership
// this node could not confirm, and reports whether to penalise p.
func (n *Node) refused(p peer.ID, ch cid.Cid) bool {
	j := syncJob{p, ch}
	n.sync.mu.Lock()
	var synced time.Time
	if st := n.sync.status[j]; st != nil {
		synced = st.last
	}
	n.sync.mu.Unlock()
	d := &n.doubts
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[syncJob]time.Time{}
	}
	since, doubted := d.m[j]
	if doubted && !synced.After(since) {
		return false // the sync that explains it has not run yet
	}
	d.m[j] = time.Now()
	// Entries are per member and channel, and a refused sender is a
	// member (the RPC inspector drops the others): the map stays small.
	return doubted
}
