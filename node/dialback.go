package node

import (
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/autonatv2"
)

// AutoNAT v2 tests an address by having a partner dial it back, and the
// partner dials from a host of its own with a fresh key: a stranger to the
// gater, which admits partners only. Refused, the dial-back would count as
// "unreachable", and go-libp2p then drops the address from those the node
// announces. So, for a short time after the node asks a partner for such a
// test (it opens /libp2p/autonat/2/dial-request to it), the gater admits a
// few inbound strangers, and the resource manager lets a stranger open no
// stream but AutoNAT's dial-back; the connection is closed soon after.
const (
	dialBackWindow = 20 * time.Second // after a dial request
	dialBackHold   = 15 * time.Second // a stranger's connection, at most
	maxDialBacks   = 4                // strangers admitted in one window
)

var errStranger = errors.New("not a partner: only AutoNAT's dial-back is open to it")

// dialBacks tracks the windows in which strangers may dial back.
type dialBacks struct {
	mu       sync.Mutex
	until    time.Time // the window's end
	admitted int       // in the current window
}

// opened notes a dial request: a window opens.
func (d *dialBacks) opened() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().After(d.until) {
		d.admitted = 0
	}
	d.until = time.Now().Add(dialBackWindow)
}

// admit reports whether a stranger's inbound connection may come in now.
func (d *dialBacks) admit() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().After(d.until) || d.admitted >= maxDialBacks {
		return false
	}
	d.admitted++
	return true
}

// admitDialBack admits inbound stranger p for a dial-back where a window is
// open, and closes its connections after dialBackHold.
func (g *gater) admitDialBack(dir network.Direction, p peer.ID) bool {
	if dir != network.DirInbound || !g.n.dialBacks.admit() {
		return false
	}
	g.n.log.Debug("admitting a stranger for AutoNAT's dial-back", "peer", p)
	time.AfterFunc(dialBackHold, func() {
		if h := g.n.host; h != nil && !g.allowed(p) {
			_ = h.Network().ClosePeer(p)
		}
	})
	return true
}

// gatedStreams wraps the resource manager: a stream with a peer the gater
// does not admit may speak AutoNAT's dial-back only, and a dial request the
// node sends opens a window for dial-backs.
type gatedStreams struct {
	network.ResourceManager
	n *Node
}

func (r gatedStreams) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	s, err := r.ResourceManager.OpenStream(p, dir)
	if err != nil {
		return nil, err
	}
	return gatedStream{s, r.n, p, dir}, nil
}

type gatedStream struct {
	network.StreamManagementScope
	n   *Node
	p   peer.ID
	dir network.Direction
}

func (s gatedStream) SetProtocol(proto protocol.ID) error {
	if proto == autonatv2.DialProtocol && s.dir == network.DirOutbound {
		s.n.dialBacks.opened()
	}
	if proto != autonatv2.DialBackProtocol && s.n.gater != nil && !s.n.gater.allowed(s.p) {
		return errStranger
	}
	return s.StreamManagementScope.SetProtocol(proto)
}
