package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/autonatv2"
)

// TestDialBackWindow: a stranger is refused, except for a few inbound
// connections just after the node sent an AutoNAT v2 dial request, and
// then it may open AutoNAT's dial-back stream and nothing else.
func TestDialBackWindow(t *testing.T) {
	n := startNode(t, "A")
	stranger, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	ai := peer.AddrInfo{ID: n.self, Addrs: n.host.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Outside a window the gater closes the connection once the stranger
	// is known (which the stranger's own Connect may not wait for).
	_ = stranger.Connect(ctx, ai)
	if s, err := stranger.NewStream(ctx, n.self, autonatv2.DialBackProtocol); err == nil {
		s.Reset()
		t.Fatalf("a stranger opened a stream outside a dial-back window")
	}
	if got := counterValue(t, n.metrics.refused); got < 1 {
		t.Fatalf("the gater counted no refusal (%v)", got)
	}
	n.dialBacks.opened()
	// A fresh stranger: the first one's refused connection may linger on
	// its side.
	stranger, err = libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if err := stranger.Connect(ctx, ai); err != nil {
		t.Fatalf("in a dial-back window, the stranger's connection was refused: %v", err)
	}
	if _, err := stranger.NewStream(ctx, n.self, SyncID); err == nil {
		t.Fatalf("a stranger opened a sync stream")
	}
	s, err := stranger.NewStream(ctx, n.self, autonatv2.DialBackProtocol)
	if err != nil {
		t.Fatalf("the stranger could not open the dial-back stream: %v", err)
	}
	s.Reset()
	for range maxDialBacks {
		n.dialBacks.admit()
	}
	if n.dialBacks.admit() {
		t.Fatalf("more than %d strangers admitted in one window", maxDialBacks)
	}
}
