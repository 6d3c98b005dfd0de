package node

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// ErrNotJoined is returned for an operation on a channel the node is not an
// active member of.
var ErrNotJoined = errors.New("this node is not a member of the channel")

// Publish validates a body, signs it as the node's next record in the
// channel, stores it durably and then publishes it to the channel's members.
// When it returns without error the record survives a crash. It is safe for
// concurrent use: concurrent publishes are signed on every core and written
// together, with one fsync.
func (n *Node) Publish(ctx context.Context, ch cid.Cid, kind string, body map[string]any, links []protocol.Link) (*protocol.Signed, error) {
	if kind == protocol.KindKeys || kind == protocol.KindKeyEvent {
		return nil, badRequest{fmt.Errorf("publish: %w: the key log changes through sangsaeng key (rotate, add-device, revoke)", protocol.ErrMalformed)}
	}
	// A change of the key log waits for the records being signed, and
	// they for it.
	n.keyMu.RLock()
	defer n.keyMu.RUnlock()
	return n.publish(ctx, ch, kind, body, links)
}

// publish is Publish for a caller that holds keyMu. Where the channel
// lacks the company's newest key log (a key change that did not reach it),
// the keys record goes first, so that partners can check the record's key.
func (n *Node) publish(ctx context.Context, ch cid.Cid, kind string, body map[string]any, links []protocol.Link) (*protocol.Signed, error) {
	if kind != protocol.KindKeys {
		if log := n.KeyLog(); len(log.Entries) > n.gov.keysHeld(ch, n.self) && n.gov.isJoined(ch) {
			if _, err := n.publish(ctx, ch, protocol.KindKeys, log.KeysBody(), nil); err != nil {
				return nil, fmt.Errorf("publish: the company's key log first: %w", err)
			}
		}
	}
	if kind == protocol.KindChannelGenesis {
		return nil, fmt.Errorf("publish: %w: a genesis founds a channel; use channel create", protocol.ErrMalformed)
	}
	if !n.started.Load() {
		return nil, fmt.Errorf("publish: %w: the node is not started", errClosed)
	}
	if !n.gov.isJoined(ch) {
		return nil, fmt.Errorf("publish in %s: %w", ch, ErrNotJoined)
	}
	if err := protocol.ValidateBody(kind, body); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	// Links with meaning: each rel the kind takes, pointing where the rel
	// says, as far as the node holds the target (one it does not hold yet
	// is checked when it arrives: checkLinksTo).
	for _, l := range links {
		if err := protocol.CheckLinkRel(kind, l.Rel); err != nil {
			return nil, badRequest{fmt.Errorf("publish: %w", err)}
		}
		if t, err := n.store.Get(l.CID); err == nil {
			if err := protocol.CheckLinkTarget(&protocol.Record{Kind: kind, Author: n.self}, l.Rel, t); err != nil {
				return nil, badRequest{fmt.Errorf("publish: %w", err)}
			}
		}
	}
	if kind == protocol.KindChannelMembers {
		links = n.gov.afterLinks(ch, links) // ordered after what this node holds
	}
	if err := n.sync.confirmOwnHead(ctx, ch); err != nil {
		return nil, err
	}
	req := &pubReq{ch: ch, kind: kind, body: body, links: links, done: make(chan struct{})}
	select {
	case n.pubQueue <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.ctx.Done():
		return nil, errClosed
	}
	// Once queued, the request is seen through: the caller learns whether
	// the record was stored even if it stops waiting for the gossip.
	<-req.done
	return req.s, req.err
}

// pubReq is a record waiting to be signed and stored.
type pubReq struct {
	ch    cid.Cid
	kind  string
	body  map[string]any
	links []protocol.Link
	done  chan struct{}
	s     *protocol.Signed
	err   error
}

// maxPubBatch bounds the records signed and written together.
const maxPubBatch = 256 // at most protocol.MaxBatch

// MaxPublishBatch is the most records the node signs with one signature:
// a burst of publishes is signed in batches of up to this many.
const MaxPublishBatch = maxPubBatch

// publisher is the one goroutine that signs the node's records, so no seq
// is signed twice: it takes every request waiting, gives them consecutive
// seqs per channel, signs them in parallel, writes them in one transaction
// with one fsync, answers the callers, and then gossips the records in
// seq order.
func (n *Node) publisher() {
	defer n.wg.Done()
	batch := make([]*pubReq, 0, maxPubBatch)
	for {
		batch = batch[:0]
		select {
		case <-n.ctx.Done():
			n.drainPublishes()
			return
		case r := <-n.pubQueue:
			batch = append(batch, r)
		}
		// Callers woken by the batch before are on their way back: let
		// them queue before this batch closes, so that one signature
		// and one fsync cover them too (group commit). A lone caller
		// pays a yield, not a wait.
		if len(n.pubQueue) < maxPubBatch {
			runtime.Gosched()
		}
	fill:
		for len(batch) < maxPubBatch {
			select {
			case r := <-n.pubQueue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		byChannel := map[cid.Cid][]*pubReq{}
		var order []cid.Cid
		for _, r := range batch {
			if byChannel[r.ch] == nil {
				order = append(order, r.ch)
			}
			byChannel[r.ch] = append(byChannel[r.ch], r)
		}
		for _, ch := range order {
			reqs := byChannel[ch]
			signed := n.sealBatch(ch, reqs)
			for _, r := range reqs {
				close(r.done)
			}
			// Gossip in seq order on a goroutine of its own: handing
			// records to gossipsub takes a few microseconds each, which
			// the next batch's publishers should not wait for.
			if len(signed) > 0 {
				select {
				case n.gossipQueue <- gossipItem{ch, signed}:
				case <-n.ctx.Done():
				}
			}
		}
	}
}

// gossipItem is records stored by the publisher, to gossip in order.
type gossipItem struct {
	ch      cid.Cid
	records []*protocol.Signed
}

// gossiper hands the publisher's records to gossipsub, in the order they
// were stored.
func (n *Node) gossiper() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case it := <-n.gossipQueue:
			n.gossipRecords(n.ctx, it.ch, it.records)
		}
	}
}

// drainPublishes fails the requests still queued when the node closes.
func (n *Node) drainPublishes() {
	for {
		select {
		case r := <-n.pubQueue:
			r.err = errClosed
			close(r.done)
		default:
			return
		}
	}
}

// sealBatch signs and stores reqs as the node's next records in ch, setting
// each request's result. It returns the records stored, in seq order.
func (n *Node) sealBatch(ch cid.Cid, reqs []*pubReq) []*protocol.Signed {
	fail := func(err error) []*protocol.Signed {
		for _, r := range reqs {
			if r.err == nil && r.s == nil {
				r.err = err
			}
		}
		return nil
	}
	outside := n.ownFromOutside.Load() // before the head is read: see lastSigned
	seq, prev, err := n.lastSigned(ch)
	if err != nil {
		return fail(err)
	}
	now := time.Now().UnixMilli()
	key := n.signer.Load()
	var recs []*protocol.Record
	var encoded [][]byte
	var live []*pubReq
	for _, q := range reqs {
		r := &protocol.Record{
			Channel: ch, Author: n.self, Seq: seq + 1, Prev: prev, Time: now,
			Kind: q.kind, Links: q.links, Body: q.body,
		}
		if err := n.gov.check(&protocol.Signed{Record: r, Signer: key.id}); err != nil {
			if errors.Is(err, protocol.ErrKeyNotInForce) {
				err = fmt.Errorf("%w; this home signs with an old key (restored from a backup?): copy keys/signing.key from the node that changed the key, or ask that node's operator; sangsaeng key ls shows the company's keys", err)
			}
			q.err = fmt.Errorf("publish: %w", err)
			continue
		}
		b, err := r.Encode()
		if err != nil {
			q.err = fmt.Errorf("publish: %w", err)
			continue
		}
		seq, prev = r.Seq, protocol.Sum(b)
		recs, encoded, live = append(recs, r), append(encoded, b), append(live, q)
	}
	if len(recs) == 0 {
		return nil
	}
	// One signature for the batch (protocol.SealBatch); a record on its
	// own keeps the single envelope, which any libp2p envelope reader
	// checks.
	var signed []*protocol.Signed
	if len(recs) == 1 {
		var s *protocol.Signed
		if s, err = protocol.SealWith(recs[0], key.key); err == nil {
			signed = []*protocol.Signed{s}
		}
	} else {
		signed, err = protocol.SealBatchEncoded(recs, encoded, key.key)
	}
	if err != nil {
		// A later record would link to one never stored: fail them all.
		return fail(fmt.Errorf("publish: %w", err))
	}
	delete(n.ownTop, ch) // until the write is known to have gone through
	res, err := n.store.PutBatch(signed)
	if err != nil {
		return fail(fmt.Errorf("publish: %w", n.storeFailed(opPublish, err)))
	}
	for i, s := range signed {
		if res[i] != store.Stored { // only this goroutine signs: cannot happen
			return fail(fmt.Errorf("publish: seq %d in %s is taken (%s); refusing to sign twice", s.Record.Seq, ch, res[i]))
		}
	}
	last := signed[len(signed)-1]
	n.ownTop[ch] = ownTop{last.Record.Seq, last.CID, outside}
	for i, s := range signed {
		live[i].s = s
		n.metrics.published.Inc()
		n.acceptedOwn(s)
	}
	return signed
}

// ownTop is the publisher's memory of the last record it stored in a
// channel, so that a batch does not scan the store for the node's head.
// outside is n.ownFromOutside when it was noted.
type ownTop struct {
	seq     uint64
	cid     cid.Cid
	outside uint64
}

// lastSigned is ownHead for the publisher: from its memory of what it
// stored last, unless a record of its own came from outside since (back
// from a partner, to a home restored from a backup: it may lie past a gap,
// which only ownHead's scan finds; received records of its own are
// counted before they are written) or the store's head has passed it,
// when it reads the store.
func (n *Node) lastSigned(ch cid.Cid) (uint64, cid.Cid, error) {
	if t, ok := n.ownTop[ch]; ok && t.outside == n.ownFromOutside.Load() {
		if head, err := n.store.Head(ch, n.self); err == nil && head <= t.seq {
			return t.seq, t.cid, nil
		}
	}
	return n.ownHead(ch)
}

// ownHead returns the highest seq the node holds of its own in ch, with
// that record's CID. It looks past gaps, so that records of its own that
// came back from partners are never signed over.
func (n *Node) ownHead(ch cid.Cid) (uint64, cid.Cid, error) {
	head, err := n.store.Head(ch, n.self)
	if err != nil {
		return 0, cid.Undef, fmt.Errorf("own head in %s: %w", ch, err)
	}
	var top *protocol.Signed
	if head > 0 {
		recs, err := n.store.ByAuthor(ch, n.self, head, head)
		if err != nil || len(recs) == 0 {
			return 0, cid.Undef, fmt.Errorf("own head in %s: record %d: %v", ch, head, err)
		}
		top = recs[0]
	}
	err = n.store.ScanAuthor(ch, n.self, head+1, func(s *protocol.Signed) error {
		if top == nil || s.Record.Seq > top.Record.Seq {
			top = s
		}
		return nil
	})
	if err != nil {
		return 0, cid.Undef, fmt.Errorf("own head in %s: %w", ch, err)
	}
	if top == nil {
		return 0, cid.Undef, nil
	}
	return top.Record.Seq, top.CID, nil
}

// gossipRecords hands records of ch to gossipsub in order: runs of
// ordinary records in bundles (protocol.EncodeBundle), one message for up
// to protocol.MaxBundle of them, and a membership or key change on its
// own, as a single envelope, which is also what a lone record travels as.
func (n *Node) gossipRecords(ctx context.Context, ch cid.Cid, records []*protocol.Signed) {
	var run [][]byte
	size := 0
	flush := func() {
		switch len(run) {
		case 0:
		case 1:
			n.broadcast(ctx, ch, run[0], false)
		default:
			n.broadcast(ctx, ch, protocol.EncodeBundle(run), false)
		}
		run, size = nil, 0
	}
	for _, s := range records {
		switch s.Record.Kind {
		case protocol.KindChannelGenesis, protocol.KindChannelMembers, protocol.KindKeys:
			flush()
			n.broadcast(ctx, ch, s.Envelope, s.Record.Kind == protocol.KindChannelMembers)
			continue
		}
		if len(run) == protocol.MaxBundle || size+protocol.BundleSize(s.Envelope) > protocol.MaxBundleBytes {
			flush()
		}
		run, size = append(run, s.Envelope), size+protocol.BundleSize(s.Envelope)
	}
	flush()
}

// broadcast sends a gossip message of stored records (an envelope or a
// bundle) to the channel's members, in the topic of the membership epoch
// the node is in now (never in a topic whose mesh may hold a member
// removed since). A membership record (members) also goes to the topics
// of the channel's past epochs, to members that have not yet learned of a
// removal and so are still there. A failure here loses nothing: the
// records are stored, and sync delivers them.
func (n *Node) broadcast(ctx context.Context, ch cid.Cid, msg []byte, members bool) {
	if err := n.subscribe(ch); err != nil && !errors.Is(err, errClosed) {
		n.log.Warn("cannot subscribe", "channel", ch, "err", err)
	}
	n.mu.Lock()
	var topics []*pubsub.Topic
	if t := n.topics[ch]; t != nil {
		topics = append(topics, t.topic)
	}
	if members {
		for _, r := range n.retired {
			if r.ch == ch {
				topics = append(topics, r.topic)
			}
		}
	}
	n.mu.Unlock()
	for _, t := range topics {
		if err := t.Publish(ctx, msg); err != nil {
			n.log.Warn("gossip publish failed; sync will deliver the records", "channel", ch, "topic", t.String(), "err", err)
		}
	}
}

// CreateChannel founds a channel with the node as its admin and the given
// members, and shares the node's profile in it.
func (n *Node) CreateChannel(ctx context.Context, name, description string, members []peer.ID) (cid.Cid, error) {
	all := []any{n.self.String()}
	for _, m := range members {
		if m != n.self {
			all = append(all, m.String())
		}
	}
	body := map[string]any{"name": name, "admins": []any{n.self.String()}, "members": all}
	if description != "" {
		body["description"] = description
	}
	if err := protocol.ValidateBody(protocol.KindChannelGenesis, body); err != nil {
		return cid.Undef, fmt.Errorf("channel create: %w", err)
	}
	r := &protocol.Record{Author: n.self, Seq: 1, Time: time.Now().UnixMilli(), Kind: protocol.KindChannelGenesis, Body: body}
	n.keyMu.RLock()
	s, err := protocol.SealWith(r, n.signer.Load().key)
	if err == nil {
		err = n.gov.checkSigner(s)
	}
	if err != nil {
		n.keyMu.RUnlock()
		return cid.Undef, fmt.Errorf("channel create: %w", err)
	}
	if _, err := n.store.Put(s); err != nil {
		n.keyMu.RUnlock()
		return cid.Undef, fmt.Errorf("channel create: %w", n.storeFailed(opPublish, err))
	}
	n.sync.confirm(s.CID)
	n.acceptedOwn(s)
	// A company that changed keys: the log that says its key signs.
	if err := n.spreadKeyLog(ctx); err != nil {
		n.log.Warn("key log not sent to the new channel", "channel", s.CID, "err", err)
	}
	n.keyMu.RUnlock()
	n.shareProfile(ctx, s.CID)
	n.log.Info("channel created", "channel", s.CID, "name", name)
	return s.CID, nil
}

// shareProfile publishes the node's profile in ch, when it has a name.
func (n *Node) shareProfile(ctx context.Context, ch cid.Cid) {
	name, brn := n.profile()
	if name == "" {
		return
	}
	body := map[string]any{"name": name}
	if brn != "" {
		body["brn"] = brn
	}
	if _, err := n.Publish(ctx, ch, protocol.KindProfile, body, nil); err != nil {
		n.log.Warn("cannot share the profile", "channel", ch, "err", err)
	}
}

// profile returns the company's name and BRN.
func (n *Node) profile() (name, brn string) {
	n.cfgMu.RLock()
	defer n.cfgMu.RUnlock()
	return n.cfg.Name, n.cfg.BRN
}

// SetProfile changes the company profile, saves it in config.toml (the
// file's own values: overrides from the environment or flags stay out of
// it), and shares it in every channel.
func (n *Node) SetProfile(ctx context.Context, name, brn string) error {
	body := map[string]any{"name": name}
	if brn != "" {
		body["brn"] = brn
	}
	if err := protocol.ValidateBody(protocol.KindProfile, body); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	n.profileMu.Lock()
	defer n.profileMu.Unlock()
	n.cfgMu.Lock()
	err := n.cfg.edit(func(c *Config) { c.Name, c.BRN = name, brn })
	n.cfgMu.Unlock()
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	for _, ch := range n.gov.joined() {
		if _, err := n.Publish(ctx, ch, protocol.KindProfile, body, nil); err != nil {
			return err
		}
	}
	return nil
}

// AddMember adds p to channel ch, which the node must administer, unless it
// is a member already.
func (n *Node) AddMember(ctx context.Context, ch cid.Cid, p peer.ID) error {
	if n.gov.memberOf(ch, p) {
		return nil
	}
	if last, gone := n.gov.removedAt(ch, p); gone {
		return fmt.Errorf("add %s to %s: %s was removed from channel %s at seq %d (its last valid record); %w; found a new channel to share with them again",
			p, ch, p, ch, last, ErrRemovedFinal)
	}
	_, err := n.Publish(ctx, ch, protocol.KindChannelMembers, map[string]any{"add": []any{p.String()}}, nil)
	return err
}

// RemoveMember removes p from ch, which the node must administer. The
// records p published up to the highest seq this node holds stay valid;
// later ones are refused by every member. Once a member knows of the
// removal, p gets nothing published in ch after it: the member moves to the
// topic of the channel's new membership epoch (see subscribe), and its sync
// and fetch answer only active members. p keeps what it holds, and stays
// connected while it shares another channel with the node (or the operator
// added it as a partner); else it is disconnected.
func (n *Node) RemoveMember(ctx context.Context, ch cid.Cid, p peer.ID) error {
	if !n.gov.memberOf(ch, p) {
		return fmt.Errorf("remove %s from %s: %w", p, ch, ErrNotMember)
	}
	if p == n.self {
		return fmt.Errorf("remove %s from %s: a node cannot remove itself", p, ch)
	}
	last, err := n.store.Head(ch, p)
	if err != nil {
		return err
	}
	body := map[string]any{"remove": []any{map[string]any{"member": p.String(), "lastSeq": int64(last)}}}
	_, err = n.Publish(ctx, ch, protocol.KindChannelMembers, body, nil)
	if err == nil {
		n.closeIfStranger(p)
	}
	return err
}
