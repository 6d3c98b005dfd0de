package node

import (
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// hub fans accepted records out to subscribers: the API's event streams and
// in-process watchers. A subscriber that falls behind loses events rather
// than slowing the node; it can catch up from the store.
type hub struct {
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	closed bool
}

type watcher struct {
	ch      chan *protocol.Signed
	channel cid.Cid // cid.Undef: every channel
	dropped int
}

func newHub() *hub { return &hub{subs: map[*watcher]struct{}{}} }

// subscribe returns a watcher of records in channel (every channel when
// Undef). The watcher's channel closes when the hub closes.
func (h *hub) subscribe(channel cid.Cid, buffer int) *watcher {
	w := &watcher{ch: make(chan *protocol.Signed, buffer), channel: channel}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(w.ch)
		return w
	}
	h.subs[w] = struct{}{}
	return w
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[w]; ok {
		delete(h.subs, w)
		close(w.ch)
	}
}

func (h *hub) publish(s *protocol.Signed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := s.ChannelOf()
	for w := range h.subs {
		if w.channel.Defined() && w.channel != ch {
			continue
		}
		select {
		case w.ch <- s:
		default:
			w.dropped++
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for w := range h.subs {
		close(w.ch)
	}
	h.subs = nil
}

// Watch returns records as the node accepts them (its own and its
// partners'), from channel ch or from every channel when ch is cid.Undef,
// and a function that stops the watch.
func (n *Node) Watch(ch cid.Cid) (<-chan *protocol.Signed, func()) {
	w := n.events.subscribe(ch, 4096)
	return w.ch, func() { n.events.unsubscribe(w) }
}
