package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// SyncID is the protocol that makes delivery complete: the asker sends its
// heads vector for a channel, and the answerer streams every record of the
// channel it holds that the asker lacks, from any author.
//
// Frames are a varint length and bytes. Asker: one heads message, then it
// closes its side. Answerer: a status frame (empty for yes, else the reason),
// its own heads message, the records' envelopes (governance records first,
// then each author's records in seq order), and an empty frame to end.
const SyncID = libp2pproto.ID("/sangsaeng/sync/1.1.0")

// FetchID fetches one record by CID from a member: the asker sends the CID,
// the answerer a status frame and the envelope.
const FetchID = libp2pproto.ID("/sangsaeng/fetch/1.1.0")

// Sync tuning.
const (
	syncBatch        = 512              // records checked and written together, at most
	syncWorkers      = 2                // syncs running at once
	syncFrameTimeout = 30 * time.Second // longest wait for the next frame
	maxHeadsFrame    = protocol.MaxHeads * 64
	// ownHeadWait bounds how long a first publish after start waits for a
	// partner to confirm the node's own head (see confirmOwnHead).
	ownHeadWait = 15 * time.Second
)

// Memory bounds of sync, in bytes. The daemon keeps its Go heap under an
// 80 MiB soft limit (cmd/sangsaeng daemon.go), and a member may answer a
// sync with nothing but envelopes of protocol.MaxEnvelopeSize, as fast as
// the link carries them; a received envelope costs about three times its
// size once decoded (the envelope, the record bytes, the decoded body).
// The figures leave most of the limit to Badger, gossip and the API:
//
//   - syncBatchBytes: a batch is written when it holds syncBatch records or
//     this many envelope bytes. 2 MiB is 8 envelopes of the largest size,
//     and more than 512 records of the usual size (about 1 KiB), so it
//     changes nothing for ordinary traffic and one fdatasync still covers
//     many records.
//   - syncInFlightBytes: envelope bytes read from partners and not yet
//     written, over every sync the node runs (the batch being read, the one
//     being checked and the one being written, for each of syncWorkers
//     syncs). 8 MiB, about 24 MiB decoded, plus one frame being read per
//     sync: a hostile member's answers stay well under the soft limit.
//   - syncAnswers: sync answers this node writes at once. Each holds a
//     request of up to maxHeadsFrame and a chunk of envelopes read from the
//     store (store.ScanEnvelopes, bounded in bytes); other askers wait for
//     a slot up to syncAnswerWait and are then told to retry.
//   - fetches: records fetched from partners at once (Fetch, for the API's
//     GET of a record this node does not hold). Each holds one envelope
//     of at most protocol.MaxEnvelopeSize, about 0.8 MiB decoded; more API
//     callers wait for a slot.
const (
	syncBatchBytes    = 2 << 20
	syncInFlightBytes = 8 << 20
	syncAnswers       = 4
	syncAnswerWait    = 10 * time.Second
	fetches           = 4
)

// byteBudget is a count of bytes that holders take and give back: the
// bytes in flight of every sync of a node.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int
}

func newByteBudget(k int) *byteBudget {
	b := &byteBudget{free: k}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// tryTake takes k bytes if they are free.
func (b *byteBudget) tryTake(k int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.free < k {
		return false
	}
	b.free -= k
	return true
}

// take waits until k bytes are free and takes them. A holder must not wait
// while it holds bytes that only it can give back (see readSyncAnswer).
func (b *byteBudget) take(k int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.free < k {
		b.cond.Wait()
	}
	b.free -= k
}

// give gives back k bytes.
func (b *byteBudget) give(k int) {
	if k == 0 {
		return
	}
	b.mu.Lock()
	b.free += k
	b.mu.Unlock()
	b.cond.Broadcast()
}

// ErrOwnHeadUnconfirmed is returned by Publish when no member of the channel
// could confirm the node's own head since it started.
var ErrOwnHeadUnconfirmed = errors.New("own head not confirmed by any partner")

// errSyncRefused is a partner's refusal to answer a sync.
var errSyncRefused = errors.New("refused")

// syncJob is a sync of one channel with one peer.
type syncJob struct {
	p  peer.ID
	ch cid.Cid
}

// syncStatus is what the node knows of how far behind a partner it is.
type syncStatus struct {
	last     time.Time
	behind   uint64 // records the partner held that this node lacked, at the last sync
	received uint64 // records received in the last sync
	err      string
}

// syncer schedules and runs syncs, and answers them.
type syncer struct {
	n       *Node
	queue   chan syncJob
	mu      sync.Mutex
	pending map[syncJob]bool // queued
	running map[syncJob]*runState
	status  map[syncJob]*syncStatus
	// confirmed holds the channels in which a partner has confirmed the
	// node's own head since start; waiters wait on the channel's signal.
	confirmed map[cid.Cid]bool
	signal    map[cid.Cid]chan struct{}
	// inFlight bounds the envelope bytes received and not yet written;
	// answers holds a token per sync answer being written.
	inFlight *byteBudget
	answers  chan struct{}
	fetches  chan struct{} // a token per Fetch asking partners
}

func newSyncer(n *Node) *syncer {
	return &syncer{
		n: n, queue: make(chan syncJob, 1024), pending: map[syncJob]bool{}, running: map[syncJob]*runState{},
		status: map[syncJob]*syncStatus{}, confirmed: map[cid.Cid]bool{}, signal: map[cid.Cid]chan struct{}{},
		inFlight: newByteBudget(syncInFlightBytes), answers: make(chan struct{}, syncAnswers),
		fetches: make(chan struct{}, fetches),
	}
}

// start runs the workers and the periodic anti-entropy, and watches for
// partners connecting.
func (s *syncer) start() {
	n := s.n
	for range syncWorkers {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			for {
				select {
				case <-n.ctx.Done():
					return
				case j := <-s.queue:
					s.mu.Lock()
					delete(s.pending, j)
					if rs := s.running[j]; rs != nil {
						// The same sync is running: run it again after,
						// for what arrived meanwhile.
						rs.again = true
						s.mu.Unlock()
						continue
					}
					ctx, cancel := context.WithTimeout(n.ctx, 10*time.Minute)
					rs := &runState{cancel: cancel}
					s.running[j] = rs
					s.mu.Unlock()
					s.run(ctx, j)
					cancel()
					s.mu.Lock()
					delete(s.running, j)
					s.mu.Unlock()
					if rs.again {
						s.schedule(j.p, j.ch)
					}
				}
			}
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(n.cfg.SyncInterval.Duration)
		defer t.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
				s.all()
			}
		}
	}()
	n.host.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			p := c.RemotePeer()
			// A new connection often means the peer restarted: a sync
			// still reading from its old connection would wait for that
			// connection to time out. Cancel it and start over.
			s.mu.Lock()
			for j, rs := range s.running {
				if j.p == p {
					rs.again = true
					rs.cancel()
				}
			}
			s.mu.Unlock()
			for _, ch := range n.gov.shared(p) {
				s.schedule(p, ch)
			}
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if nw.Connectedness(c.RemotePeer()) != network.Connected {
				n.mesh.drop(c.RemotePeer())
			}
		},
	})
	s.all()
}

// all schedules a sync of every joined channel with every connected member.
func (s *syncer) all() {
	n := s.n
	for _, ch := range n.gov.joined() {
		s.channel(ch)
	}
}

// channel schedules a sync of ch with every connected member.
func (s *syncer) channel(ch cid.Cid) int {
	n := s.n
	k := 0
	for _, p := range n.host.Network().Peers() {
		if n.gov.memberOf(ch, p) {
			s.schedule(p, ch)
			k++
		}
	}
	return k
}

// schedule queues a sync of ch with p unless one is already queued.
func (s *syncer) schedule(p peer.ID, ch cid.Cid) {
	if p == s.n.self {
		return
	}
	j := syncJob{p, ch}
	s.mu.Lock()
	if s.pending[j] {
		s.mu.Unlock()
		return
	}
	s.pending[j] = true
	s.mu.Unlock()
	select {
	case s.queue <- j:
	default: // full: the periodic round will come back to it
		s.mu.Lock()
		delete(s.pending, j)
		s.mu.Unlock()
	}
}

// runState is a sync in progress.
type runState struct {
	cancel context.CancelFunc
	again  bool // run it once more when it ends
}

// run performs one sync and records its outcome.
func (s *syncer) run(ctx context.Context, j syncJob) {
	n := s.n
	start := time.Now()
	st, err := n.syncWith(ctx, j.p, j.ch)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.status[j]
	if cur == nil {
		cur = &syncStatus{}
		s.status[j] = cur
	}
	if err != nil {
		cur.err = err.Error()
		n.metrics.syncRuns.WithLabelValues("error").Inc()
		switch {
		case n.ctx.Err() != nil:
		case isStoreFailure(err): // logged by storeFailed
		case errors.Is(err, errSyncRefused):
			// Usually a partner that has not yet learned of a membership
			// change; the next round retries.
			n.log.Debug("sync refused", "peer", j.p, "channel", j.ch, "err", err)
		default:
			n.log.Warn("sync failed", "peer", j.p, "channel", j.ch, "err", err)
		}
		return
	}
	*cur = *st
	n.metrics.syncRuns.WithLabelValues("ok").Inc()
	n.metrics.syncLag.WithLabelValues(j.p.String(), j.ch.String()).Set(float64(st.behind))
	if st.received > 0 {
		n.log.Info("synced", "peer", j.p, "channel", j.ch, "records", st.received, "took", time.Since(start).Round(time.Millisecond))
	}
	if !s.confirmed[j.ch] {
		s.confirmed[j.ch] = true
		if c := s.signal[j.ch]; c != nil {
			close(c)
			delete(s.signal, j.ch)
		}
	}
}

// confirm marks ch's own head as confirmed without a partner: the node
// founded the channel, so nobody else can hold records of its in it.
func (s *syncer) confirm(ch cid.Cid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirmed[ch] = true
	if c := s.signal[ch]; c != nil {
		close(c)
		delete(s.signal, ch)
	}
}

// confirmOwnHead makes sure, before the node's first record in ch since it
// started, that a partner has told it its own head: a node restored from an
// old backup would otherwise sign seqs it already used. It syncs with the
// connected members and waits up to ownHeadWait.
func (s *syncer) confirmOwnHead(ctx context.Context, ch cid.Cid) error {
	s.mu.Lock()
	if s.confirmed[ch] {
		s.mu.Unlock()
		return nil
	}
	snap, ok := s.n.gov.channel(ch)
	if ok && len(snap.members) <= 1 {
		s.confirmed[ch] = true // nobody else could hold our records
		s.mu.Unlock()
		return nil
	}
	c := s.signal[ch]
	if c == nil {
		c = make(chan struct{})
		s.signal[ch] = c
	}
	s.mu.Unlock()
	s.channel(ch)
	t := time.NewTimer(ownHeadWait)
	defer t.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-c:
			return nil
		case <-tick.C: // partners may have connected meanwhile
			s.channel(ch)
		case <-t.C:
			return fmt.Errorf("publish in %s: %w: no member of the channel answered within %s since this node started; "+
				"a node restored from a backup could otherwise sign a seq twice. Retry when a partner is online (sangsaeng peers)", ch, ErrOwnHeadUnconfirmed, ownHeadWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// statusOf returns the sync status of every partner for ch.
func (s *syncer) statusOf(ch cid.Cid) map[peer.ID]syncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[peer.ID]syncStatus{}
	for j, st := range s.status {
		if j.ch == ch {
			out[j.p] = *st
		}
	}
	return out
}

// syncWith asks p for every record of ch this node lacks and ingests them.
func (n *Node) syncWith(ctx context.Context, p peer.ID, ch cid.Cid) (*syncStatus, error) {
	ours, err := n.store.Heads(ch)
	if err != nil {
		return nil, n.storeFailed(opSync, err)
	}
	tips, err := n.tips(ch, ours)
	if err != nil {
		return nil, n.storeFailed(opSync, err)
	}
	req, err := (&protocol.HeadsMessage{Channel: ch, Heads: protocol.Heads(ours), Tips: tips}).Encode()
	if err != nil {
		return nil, err
	}
	st, err := n.host.NewStream(ctx, p, SyncID)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", SyncID, err)
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() }) // reads do not watch ctx
	defer stop()
	_ = st.SetDeadline(time.Now().Add(syncFrameTimeout))
	if err := writeFrame(st, req); err != nil {
		st.Reset()
		return nil, err
	}
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return nil, err
	}
	return n.readSyncAnswer(bufio.NewReaderSize(st, 64<<10), p, ch, ours,
		func() { _ = st.SetReadDeadline(time.Now().Add(syncFrameTimeout)) },
		func() { _ = st.Reset() })
}

// readSyncAnswer reads a sync answer from p (the status frame, p's heads,
// the envelopes and the empty frame that ends them) and ingests the records.
// ours is the heads vector the node asked with. beforeRecord is called
// before each record frame is read (to extend the stream's deadline), reset
// when the stream must be reset. It is the asker's parser of outside input.
func (n *Node) readSyncAnswer(r *bufio.Reader, p peer.ID, ch cid.Cid, ours map[peer.ID]uint64, beforeRecord, reset func()) (*syncStatus, error) {
	status, err := readFrame(r, 1024)
	if err != nil {
		reset()
		return nil, fmt.Errorf("no answer: %w", err)
	}
	if len(status) > 0 {
		return nil, fmt.Errorf("%w: %s", errSyncRefused, status)
	}
	raw, err := readFrame(r, maxHeadsFrame)
	if err != nil {
		reset()
		return nil, fmt.Errorf("heads: %w", err)
	}
	theirs, err := protocol.DecodeHeadsMessage(raw)
	if err != nil {
		reset()
		return nil, fmt.Errorf("bad heads message: %v", err)
	}
	if theirs.Channel != ch {
		reset()
		return nil, fmt.Errorf("bad heads message: for channel %s, asked for %s", theirs.Channel, ch)
	}
	res := &syncStatus{behind: behind(theirs.Heads, ours)}
	// Records are checked and stored in batches, in a pipeline: while
	// one batch is written (and synced), the next is read and checked.
	// Every envelope read takes its bytes from the node's in-flight
	// budget, given back once its batch is written.
	budget := n.sync.inFlight
	var (
		mu       sync.Mutex // received and bad, which the writer sets
		received uint64
		bad      error
	)
	type batchOf struct {
		items []ingestItem
		bytes int
	}
	writes := make(chan batchOf, 1)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for b := range writes {
			acc, err := n.storeChecked(b.items, p)
			budget.give(b.bytes)
			mu.Lock()
			received += uint64(acc)
			if err != nil && bad == nil {
				bad = err
			}
			mu.Unlock()
		}
	}()
	batch := make([][]byte, 0, 64)
	batchBytes := 0
	flush := func() {
		if len(batch) > 0 {
			writes <- batchOf{n.checkEnvelopes(ch, batch), batchBytes}
			batch, batchBytes = make([][]byte, 0, 64), 0
		}
	}
	finish := func() {
		flush()
		close(writes)
		<-written
		res.received = received
	}
	for {
		beforeRecord()
		env, err := readFrame(r, protocol.MaxEnvelopeSize)
		if err != nil {
			reset()
			finish()
			return nil, fmt.Errorf("after %d records: %w", res.received, err)
		}
		if len(env) == 0 {
			break
		}
		if !budget.tryTake(len(env)) {
			// Wait only with nothing held back: the batches sent on
			// give their bytes back once written, whatever other syncs do.
			// The batches other syncs are still reading hold at most
			// syncWorkers*syncBatchBytes, well below the budget, so a
			// slow partner never stalls the syncs with the others.
			flush()
			budget.take(len(env))
		}
		batch = append(batch, env)
		batchBytes += len(env)
		if len(batch) == syncBatch || batchBytes >= syncBatchBytes {
			flush()
		}
	}
	finish()
	if isStoreFailure(bad) {
		return nil, bad
	}
	if bad != nil {
		return nil, fmt.Errorf("partner sent records that fail the checks: %w", bad)
	}
	now, err := n.store.Heads(ch)
	if err != nil {
		return nil, n.storeFailed(opSync, err)
	}
	res.behind = behind(theirs.Heads, now)
	res.last = time.Now()
	return res, nil
}

// tips returns the CID of the record at each author's head.
func (n *Node) tips(ch cid.Cid, heads map[peer.ID]uint64) (map[peer.ID]cid.Cid, error) {
	out := make(map[peer.ID]cid.Cid, len(heads))
	for a, h := range heads {
		if h == 0 {
			continue
		}
		recs, err := n.store.ByAuthor(ch, a, h, h)
		if err != nil {
			return nil, err
		}
		if len(recs) == 1 {
			out[a] = recs[0].CID
		}
	}
	return out, nil
}

// behind counts the records theirs holds beyond ours, without gaps.
func behind(theirs protocol.Heads, ours map[peer.ID]uint64) uint64 {
	var k uint64
	for a, h := range theirs {
		if h > ours[a] {
			k += h - ours[a]
		}
	}
	return k
}

// handleSync answers a member's sync request: only an active member of the
// channel, asking a node that is one, gets an answer; a member removed
// since is refused.
func (n *Node) handleSync(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(syncFrameTimeout))
	w := bufio.NewWriterSize(st, 64<<10)
	refuse := func(why string) {
		_ = writeFrame(w, []byte(why))
		_ = w.Flush()
	}
	// A slot first: the request and the answer's chunks are the memory
	// an answer holds.
	wait := time.NewTimer(syncAnswerWait)
	select {
	case n.sync.answers <- struct{}{}:
		wait.Stop()
		defer func() { <-n.sync.answers }()
	case <-wait.C:
		n.metrics.syncRefused.Inc()
		refuse("busy: too many syncs at once; retry later")
		return
	}
	raw, err := readFrame(bufio.NewReader(st), maxHeadsFrame)
	if err != nil {
		st.Reset()
		return
	}
	req, err := protocol.DecodeHeadsMessage(raw)
	if err != nil {
		why := "bad heads message: " + err.Error()
		if len(why) > 512 { // the status frame holds 1 KiB
			why = why[:512]
		}
		refuse(why)
		return
	}
	ch := req.Channel
	if !n.gov.isJoined(ch) || !n.gov.memberOf(ch, from) {
		n.metrics.syncRefused.Inc()
		refuse("not a member of that channel")
		return
	}
	if err := n.answerSync(w, st, from, ch, req.Heads, req.Tips); err != nil {
		st.Reset()
		n.log.Debug("sync answer failed", "peer", from, "channel", ch, "err", err)
		return
	}
	if err := w.Flush(); err != nil {
		st.Reset()
	}
}

// answerSync writes the status, this node's heads and every record of ch
// beyond the asker's heads.
func (n *Node) answerSync(w *bufio.Writer, st network.Stream, asker peer.ID, ch cid.Cid, theirs protocol.Heads, tips map[peer.ID]cid.Cid) error {
	ours, err := n.store.Heads(ch)
	if err != nil {
		return err
	}
	hm, err := (&protocol.HeadsMessage{Channel: ch, Heads: protocol.Heads(ours)}).Encode()
	if err != nil {
		return err
	}
	if err := writeFrame(w, nil); err != nil {
		return err
	}
	if err := writeFrame(w, hm); err != nil {
		return err
	}
	sent := 0
	sendEnv := func(env []byte) error {
		sent++
		if sent%1024 == 0 {
			_ = st.SetWriteDeadline(time.Now().Add(syncFrameTimeout))
		}
		return writeFrame(w, env)
	}
	send := func(s *protocol.Signed) error { return sendEnv(s.Envelope) }
	// Governance first, in causal order (the linearisation of
	// protocol.Membership), so that the asker knows every member before it
	// checks their records and every change after those it follows.
	snap, _ := n.gov.channel(ch)
	gov := map[cid.Cid]bool{}
	for _, s := range snap.governance {
		if s.Record.Seq > theirs[s.Record.Author] {
			gov[s.CID] = true
			if err := send(s); err != nil {
				return err
			}
		}
	}
	// Where the asker's head is another record than ours for the same seq,
	// the author equivocated: send ours, so the asker holds both.
	for author, tip := range tips {
		recs, err := n.store.ByAuthor(ch, author, theirs[author], theirs[author])
		if err != nil {
			return err
		}
		if len(recs) == 1 && recs[0].CID != tip {
			if err := send(recs[0]); err != nil {
				return err
			}
		}
	}
	for author := range ours {
		err := n.store.ScanEnvelopes(ch, author, theirs[author]+1, func(c cid.Cid, env []byte) error {
			if gov[c] {
				return nil
			}
			return sendEnv(env)
		})
		if err != nil {
			return err
		}
	}
	// Fork evidence travels to every member, also to one whose head is
	// the same record as ours and so shows no sign of the equivocation:
	// the records of the forks held go along, once per asker while this
	// node runs (unless more forks came since).
	forks, err := n.store.Forks(ch)
	if err != nil {
		return err
	}
	k := peerChannel{asker, ch}
	n.forksSent.mu.Lock()
	already := n.forksSent.m[k]
	n.forksSent.mu.Unlock()
	if len(forks) > already {
		for _, f := range forks {
			for _, c := range f.CIDs {
				if c == tips[f.Author] {
					continue
				}
				s, err := n.store.Get(c)
				if err != nil {
					return err
				}
				if err := send(s); err != nil {
					return err
				}
			}
		}
		n.forksSent.mu.Lock()
		if n.forksSent.m == nil {
			n.forksSent.m = map[peerChannel]int{}
		}
		n.forksSent.m[k] = len(forks)
		n.forksSent.mu.Unlock()
	}
	n.metrics.syncServed.Add(float64(sent))
	return writeFrame(w, nil)
}

// ingestItem is a received envelope, checked.
type ingestItem struct {
	s   *protocol.Signed
	err error
	dup bool
}

// checkEnvelopes verifies envelopes received in channel ch, on every core,
// skipping those the store holds.
func (n *Node) checkEnvelopes(ch cid.Cid, envs [][]byte) []ingestItem {
	items := make([]ingestItem, len(envs))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(envs))
	next := make(chan int, len(envs))
	for i := range envs {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				env := envs[i]
				if c, err := protocol.EnvelopeCID(env); err == nil {
					if has, err := n.store.Has(c); err == nil && has {
						items[i].dup = true
						continue
					}
				}
				s, err := protocol.OpenDelegated(env) // the author's key log decides the signer (gov.check)
				if err == nil && s.ChannelOf() != ch {
					err = fmt.Errorf("%w: record of channel %s sent in channel %s", errWrongChannel, s.ChannelOf(), ch)
				}
				if err == nil {
					err = protocol.ValidateBody(s.Record.Kind, s.Record.Body)
				}
				items[i] = ingestItem{s: s, err: err}
			}
		}()
	}
	wg.Wait()
	return items
}

// storeChecked stores records received by sync and checked by
// checkEnvelopes, in order: membership is checked here, as records may
// change it (a membership change is stored before the records after it
// are checked), and writes are batched. It returns how many records were
// stored and the first rule a record broke, if any.
func (n *Node) storeChecked(items []ingestItem, from peer.ID) (int, error) {
	stored := 0
	var firstErr error
	reject := func(err error) {
		n.metrics.rejected.WithLabelValues(rejectReason(err)).Inc()
		n.penalty.add(from, 1)
		if firstErr == nil {
			firstErr = err
		}
	}
	var pending []*protocol.Signed
	write := func() error {
		if len(pending) == 0 {
			return nil
		}
		n.noteOwnFromOutside(pending)
		res, err := n.store.PutBatch(pending)
		err = n.storeFailed(opSync, err)
		// On an error, res holds the records written before it.
		var ok []*protocol.Signed
		for i, r := range res {
			switch r {
			case store.Stored:
				ok = append(ok, pending[i])
			case store.Forked:
				n.forked(pending[i], from)
			}
		}
		stored += len(ok)
		n.acceptedAll(ok)
		pending = pending[:0]
		return err
	}
	for _, it := range items {
		if it.dup {
			n.metrics.duplicates.Inc()
			continue
		}
		if it.err != nil {
			reject(it.err)
			continue
		}
		s := it.s
		if err := n.gov.check(s); err != nil {
			if errors.Is(err, ErrPendingChange) || errors.Is(err, ErrKeyLogFork) {
				// Follows a change the answerer did not send (yet): not
				// its fault; a later sync brings it.
				n.metrics.rejected.WithLabelValues(rejectReason(err)).Inc()
				continue
			}
			reject(err)
			continue
		}
		switch s.Record.Kind {
		case protocol.KindChannelGenesis, protocol.KindChannelMembers, protocol.KindKeys:
			// Membership and key changes take effect before the records
			// after them.
			if err := write(); err != nil {
				return stored, err
			}
			n.noteOwnFromOutside([]*protocol.Signed{s})
			res, err := n.store.Put(s)
			if err != nil {
				return stored, n.storeFailed(opSync, err)
			}
			switch res {
			case store.Stored:
				stored++
				n.accepted(s)
			case store.Forked:
				n.forked(s, from)
			}
		default:
			pending = append(pending, s)
		}
	}
	if err := write(); err != nil {
		return stored, err
	}
	return stored, firstErr
}

// forked records equivocation evidence.
func (n *Node) forked(s *protocol.Signed, from peer.ID) {
	n.metrics.forks.Inc()
	n.log.Error("equivocation: author signed two records for one seq; both kept as evidence",
		"channel", s.ChannelOf(), "peer", s.Record.Author, "seq", s.Record.Seq, "cid", s.CID, "from", from)
}

// handleFetch answers a member's request for one record.
func (n *Node) handleFetch(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(syncFrameTimeout))
	raw, err := readFrame(bufio.NewReader(st), 128)
	if err != nil {
		st.Reset()
		return
	}
	reply := func(status, env []byte) {
		w := bufio.NewWriter(st)
		if writeFrame(w, status) != nil || writeFrame(w, env) != nil || w.Flush() != nil {
			st.Reset()
		}
	}
	c, err := cid.Cast(raw)
	if err != nil {
		reply([]byte("bad CID"), nil)
		return
	}
	s, err := n.record(c)
	// A record is served only to active members of its channel, by a node
	// that is one: to anyone else (a member removed since) it does not
	// exist.
	if err != nil || s == nil || !n.gov.isJoined(s.ChannelOf()) || !n.gov.memberOf(s.ChannelOf(), from) {
		reply([]byte("not found"), nil)
		return
	}
	reply(nil, s.Envelope)
}

// Fetch returns a record by CID: from the store, or else from a connected
// partner that holds it in a channel this node is a member of, checked and
// stored like any record received.
func (n *Node) Fetch(ctx context.Context, c cid.Cid) (*protocol.Signed, error) {
	if s, err := n.record(c); err != nil || s != nil {
		return s, err
	}
	select {
	case n.sync.fetches <- struct{}{}:
		defer func() { <-n.sync.fetches }()
	case <-ctx.Done():
		return nil, fmt.Errorf("record %s: %w (waiting for one of the %d fetches from partners running at once)", c, ctx.Err(), fetches)
	}
	for _, p := range n.host.Network().Peers() {
		if !n.gov.isPartner(p) {
			continue
		}
		env, err := n.fetchFrom(ctx, p, c)
		if err != nil {
			continue
		}
		if got, err := protocol.EnvelopeCID(env); err != nil || got != c {
			continue
		}
		s, err := n.ingest(cid.Undef, env, p, opFetch)
		if err == nil || errors.Is(err, errIgnore) {
			if s == nil {
				s, err = n.record(c)
				if err != nil || s == nil {
					continue
				}
			}
			return s, nil
		}
	}
	return nil, fmt.Errorf("record %s: %w (not held here, nor by a connected partner in a shared channel)", c, store.ErrNotFound)
}

func (n *Node) fetchFrom(ctx context.Context, p peer.ID, c cid.Cid) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := n.host.NewStream(ctx, p, FetchID)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	if err := writeFrame(st, c.Bytes()); err != nil {
		st.Reset()
		return nil, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	status, err := readFrame(r, 1024)
	if err != nil {
		st.Reset()
		return nil, err
	}
	env, err := readFrame(r, protocol.MaxEnvelopeSize)
	if err != nil {
		st.Reset()
		return nil, err
	}
	if len(status) > 0 {
		return nil, fmt.Errorf("%s", status)
	}
	return env, nil
}
