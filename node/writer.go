package node

import (
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// maxPutBatch bounds how many received records one store write takes.
const maxPutBatch = 256

// putReq is a checked record waiting for the writer.
type putReq struct {
	s    *protocol.Signed
	res  store.Result
	err  error
	done chan struct{}
}

// put stores a checked record durably, as store.Put does, through the
// writer: records that gossipsub validates at the same time go to disk in
// one transaction and one sync, instead of a sync each (group commit, as
// in a database's log writer). It returns once the record is on disk.
func (n *Node) put(s *protocol.Signed) (store.Result, error) {
	res, errs := n.putAll([]*protocol.Signed{s})
	return res[0], errs[0]
}

// putAll is put for several records, queued in order before it waits for
// any, so that one group commit takes them together.
func (n *Node) putAll(ss []*protocol.Signed) ([]store.Result, []error) {
	res, errs := make([]store.Result, len(ss)), make([]error, len(ss))
	n.noteOwnFromOutside(ss)
	if f := n.putFault.Load(); f != nil {
		if err := (*f)(); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return res, errs
		}
	}
	if !n.started.Load() {
		for i, s := range ss {
			res[i], errs[i] = n.store.Put(s)
		}
		return res, errs
	}
	reqs := make([]*putReq, 0, len(ss))
queue:
	for _, s := range ss {
		r := &putReq{s: s, done: make(chan struct{})}
		select {
		case n.putQueue <- r:
			reqs = append(reqs, r)
		case <-n.ctx.Done():
			break queue
		}
	}
	for i := range ss {
		if i < len(reqs) {
			res[i], errs[i] = n.waitPut(reqs[i])
		} else {
			errs[i] = errClosed
		}
	}
	return res, errs
}

// noteOwnFromOutside counts, before they are written, records of the
// node's own among received ones, so that the publisher reads its head
// from the store again (see lastSigned).
func (n *Node) noteOwnFromOutside(ss []*protocol.Signed) {
	for _, s := range ss {
		if s.Record.Author == n.self {
			n.ownFromOutside.Add(1)
		}
	}
}

// waitPut waits for the writer to store r.
func (n *Node) waitPut(r *putReq) (store.Result, error) {
	select {
	case <-r.done:
		return r.res, r.err
	case <-n.ctx.Done():
		// The writer finishes the batch it holds before it exits; wait
		// for it so a record is never reported lost that was stored.
		select {
		case <-r.done:
			return r.res, r.err
		case <-n.writerDone:
			select {
			case <-r.done:
				return r.res, r.err
			default:
				return 0, errClosed
			}
		}
	}
}

// writer is the goroutine that stores received records in batches.
func (n *Node) writer() {
	defer n.wg.Done()
	defer close(n.writerDone)
	batch := make([]*putReq, 0, maxPutBatch)
	recs := make([]*protocol.Signed, 0, maxPutBatch)
	for {
		batch, recs = batch[:0], recs[:0]
		select {
		case <-n.ctx.Done():
			return
		case r := <-n.putQueue:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < maxPutBatch {
			select {
			case r := <-n.putQueue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		for _, r := range batch {
			recs = append(recs, r.s)
		}
		res, err := n.store.PutBatch(recs)
		if err != nil && len(batch) > 1 {
			// One bad record must not fail the others: those written
			// before the failure keep their results, the rest are
			// stored one by one.
			for i, r := range batch {
				if i < len(res) {
					r.res = res[i]
				} else {
					r.res, r.err = n.store.Put(r.s)
				}
				close(r.done)
			}
			continue
		}
		for i, r := range batch {
			if err != nil {
				r.err = err
			} else {
				r.res = res[i]
			}
			close(r.done)
		}
	}
}

// checkJob is a received envelope for a checker.
type checkJob struct {
	ch   cid.Cid
	env  []byte
	from peer.ID
	op   string // the path it came in on (opGossip, opSync...)
	s    *protocol.Signed
	err  error
	done chan struct{}
}

// checker verifies received envelopes until the node closes. Gossipsub
// validates each message on a goroutine of its own; verifying a signature
// there would grow that new goroutine's stack every time (a tenth of a
// receiver's CPU under load). A few long-lived checkers, one per core plus
// one, do it on stacks grown once; the validator goroutines only wait.
func (n *Node) checker() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case j := <-n.checkQueue:
			j.s, j.err = n.verifyNow(j.ch, j.env, j.from, j.op)
			close(j.done)
		}
	}
}

// gapDelay is how long a gap in an author's chain may last before the node
// asks for the missing records. Gossipsub validates records concurrently,
// so seq 7 is often stored a moment before seq 6: a gap that closes by
// itself within the delay costs no sync.
const gapDelay = 500 * time.Millisecond

// gapChecks holds the gaps with a check pending, by (peer, channel,
// author), with the highest seq seen beyond the head: a burst of
// out-of-order records schedules one check, not one each.
type gapChecks struct {
	mu      sync.Mutex
	pending map[authorGapKey]uint64
}

// peerChannel is a (peer, channel) pair, a key for per-partner state.
type peerChannel struct {
	from peer.ID
	ch   cid.Cid
}

type authorGapKey struct {
	peerChannel
	author peer.ID
}

// suspectGap is called when a record from peer from put author's seq
// beyond its contiguous head in ch. If the head has not reached the
// highest such seq after gapDelay, the node syncs ch with from, which has
// just shown that it holds the author's chain; if the head moved in that
// time (a burst stored out of order, still closing), it waits another
// gapDelay, up to maxGapWaits in all, so a gap still being filled by
// gossip costs no sync that would fetch the same records again.
func (n *Node) suspectGap(from peer.ID, ch cid.Cid, author peer.ID, seq uint64) {
	k := authorGapKey{peerChannel{from, ch}, author}
	n.gaps.mu.Lock()
	if last, ok := n.gaps.pending[k]; ok {
		n.gaps.pending[k] = max(last, seq)
		n.gaps.mu.Unlock()
		return
	}
	if n.gaps.pending == nil {
		n.gaps.pending = map[authorGapKey]uint64{}
	}
	n.gaps.pending[k] = seq
	n.gaps.mu.Unlock()
	head0, _ := n.store.Head(ch, author)
	waits := 0
	var check func()
	check = func() {
		if n.ctx.Err() != nil {
			n.gaps.mu.Lock()
			delete(n.gaps.pending, k)
			n.gaps.mu.Unlock()
			return
		}
		head, err := n.store.Head(ch, author)
		n.gaps.mu.Lock()
		seq := n.gaps.pending[k]
		if err == nil && head < seq && head > head0 && waits < maxGapWaits {
			n.gaps.mu.Unlock()
			head0, waits = head, waits+1
			time.AfterFunc(gapDelay, check)
			return
		}
		delete(n.gaps.pending, k)
		n.gaps.mu.Unlock()
		if err == nil && head < seq {
			n.metrics.gaps.Inc()
			n.sync.schedule(from, ch)
		}
	}
	time.AfterFunc(gapDelay, check)
}

// maxGapWaits bounds how often a gap that keeps closing defers its sync.
const maxGapWaits = 10

// tailDelay is how long gossip from a peer in a channel must have been
// quiet before the node checks, with a sync, that it holds what the peer
// sent. Gossipsub drops messages when a queue is full and, with IHAVE
// gossip off (see newPubSub), nothing else repairs the loss of the last
// records of a burst: no later record shows the gap.
const tailDelay = time.Second

// tailChecks debounces the tail check per (peer, channel).
type tailChecks struct {
	mu     sync.Mutex
	timers map[peerChannel]*time.Timer
}

// noteGossip is called for each record stored from gossip sent by from in
// ch. Once from has sent nothing in ch for tailDelay, the node syncs ch
// with it; a sync that finds nothing missing costs a heads exchange.
func (n *Node) noteGossip(from peer.ID, ch cid.Cid) {
	k := peerChannel{from, ch}
	n.tails.mu.Lock()
	defer n.tails.mu.Unlock()
	if t, ok := n.tails.timers[k]; ok {
		t.Reset(tailDelay)
		return
	}
	if n.tails.timers == nil {
		n.tails.timers = map[peerChannel]*time.Timer{}
	}
	var t *time.Timer
	t = time.AfterFunc(tailDelay, func() {
		n.tails.mu.Lock()
		if n.tails.timers[k] == t {
			delete(n.tails.timers, k)
		}
		n.tails.mu.Unlock()
		if n.ctx.Err() == nil {
			n.sync.schedule(from, ch)
		}
	})
	n.tails.timers[k] = t
}
