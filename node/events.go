package node

import (
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// hub fans accepted records out to in-process watchers (Watch), and wakes
// the API's event streams, which read the records from the store's arrival
// index themselves (see apiEvents). A watcher whose buffer is full is
// closed rather than slowing the node or skipping records without a word;
// an event stream cannot fall behind that way, since it holds no queue.
type hub struct {
	mu     sync.Mutex
	subs   map[*watcher]struct{}
	closed bool
	wake   chan struct{} // closed at the next record or at close; nil while nobody waits
}

// next returns a channel closed when the next record is accepted or the
// hub closes, and whether it is closed already.
func (h *hub) next() (<-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, true
	}
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	return h.wake, false
}

type watcher struct {
	ch      chan *protocol.Signed
	channel cid.Cid // cid.Undef: every channel
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
	if h.wake != nil {
		close(h.wake)
		h.wake = nil
	}
	ch := s.ChannelOf()
	for w := range h.subs {
		if w.channel.Defined() && w.channel != ch {
			continue
		}
		select {
		case w.ch <- s:
		default:
			// Too far behind: the watcher ends here, after the
			// records it holds, instead of going on with a gap.
			delete(h.subs, w)
			close(w.ch)
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
	if h.wake != nil {
		close(h.wake)
		h.wake = nil
	}
	for w := range h.subs {
		close(w.ch)
	}
	h.subs = nil
}

// Watch returns records as the node accepts them (its own and its
// partners'), from channel ch or from every channel when ch is cid.Undef,
// and a function that stops the watch. The channel closes when the node
// closes, and also when the reader falls 4096 records behind: a watch
// never skips a record without ending. (The API's event stream has no
// such limit: it reads from the store.)
func (n *Node) Watch(ch cid.Cid) (<-chan *protocol.Signed, func()) {
	w := n.events.subscribe(ch, 4096)
	return w.ch, func() { n.events.unsubscribe(w) }
}
