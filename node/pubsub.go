package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// GossipSubID is the gossipsub protocol sangsaeng nodes speak. It is not the
// default gossipsub ID, so generic libp2p peers never join our meshes.
const GossipSubID = libp2pproto.ID("/sangsaeng/gossipsub/1.2.0")

// TopicPrefix starts every channel's pubsub topic: TopicPrefix + channel ID.
const TopicPrefix = "/sangsaeng/ch/"

// Topic returns the pubsub topic of a channel.
func Topic(ch cid.Cid) string { return TopicPrefix + ch.String() }

// topicChannel returns the channel of a topic, or false for a foreign topic.
func topicChannel(topic string) (cid.Cid, bool) {
	s, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return cid.Undef, false
	}
	c, err := cid.Decode(s)
	return c, err == nil
}

// queueSize replaces gossipsub's default queues of 32, which drop messages
// under bursts well below capacity (DESIGN.md section 7).
const queueSize = 1024

// validatorConcurrency is how many records of one channel may be in
// validation at once.
const validatorConcurrency = 4096

func newPubSub(n *Node) (*pubsub.PubSub, error) {
	features := func(f pubsub.GossipSubFeature, p libp2pproto.ID) bool {
		return p == GossipSubID && (f == pubsub.GossipSubFeatureMesh || f == pubsub.GossipSubFeatureIdontwant)
	}
	// No IHAVE gossip: go-libp2p-pubsub sends it to every peer subscribed
	// to a topic without asking the peer filter, so a connected non-member
	// (a partner in another channel, a relay) would learn the CIDs and
	// the pace of a channel's records. Mesh push delivers; sync repairs.
	params := pubsub.DefaultGossipSubParams()
	params.Dlazy, params.GossipFactor = 0, 0
	ps, err := pubsub.NewGossipSub(n.ctx, n.host,
		pubsub.WithGossipSubParams(params),
		pubsub.WithGossipSubProtocols([]libp2pproto.ID{GossipSubID}, features),
		// The record carries its author's signature; gossipsub's own would
		// sign and verify every message a second time.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(messageID),
		pubsub.WithFloodPublish(false),
		pubsub.WithPeerExchange(false),
		pubsub.WithPeerFilter(n.peerFilter),
		pubsub.WithAppSpecificRpcInspector(n.inspectRPC),
		pubsub.WithPeerOutboundQueueSize(queueSize),
		pubsub.WithValidateQueueSize(queueSize),
		pubsub.WithMaxMessageSize(protocol.MaxEnvelopeSize+64<<10),
		pubsub.WithLogger(n.log.With("sys", "pubsub")),
		pubsub.WithPeerScore(n.scoreParams(), scoreThresholds),
		pubsub.WithPeerScoreInspect(n.inspectScores, time.Second),
		pubsub.WithRawTracer(&psTracer{m: n.metrics, mesh: &n.mesh, grafted: n.grafted}),
	)
	if err != nil {
		return nil, fmt.Errorf("gossipsub: %w", err)
	}
	return ps, nil
}

// messageID is the record's CID, so that a record is one message however
// many peers forward it, and a resent record is recognised as seen.
func messageID(m *pb.Message) string {
	c, err := protocol.EnvelopeCID(m.Data)
	if err != nil { // the validator rejects it; any stable ID will do
		h := sha256.Sum256(m.Data)
		return string(h[:])
	}
	return string(c.Bytes())
}

// peerFilter keeps non-members out of a channel's mesh, gossip and fanout.
func (n *Node) peerFilter(p peer.ID, topic string) bool {
	ch, ok := topicChannel(topic)
	return ok && n.gov.memberOf(ch, p)
}

// errNotMemberRPC drops an RPC that touches a channel its sender is not in.
var errNotMemberRPC = errors.New("rpc from a non-member of the channel")

// inspectRPC drops, before gossipsub handles it, any RPC in which a peer
// publishes in, or gossips or grafts about, a channel it is not a member of
// or a topic that is not a channel. Subscription announcements pass: a peer
// announces its subscriptions once, on connecting, possibly before this node
// has learned that the peer is a member, and nothing is ever sent to a
// non-member because peerFilter keeps it out of every mesh, gossip and fanout.
func (n *Node) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	ok := func(topic string) bool {
		ch, isCh := topicChannel(topic)
		return isCh && n.gov.memberOf(ch, from)
	}
	drop := func() error {
		n.metrics.rpcDropped.Inc()
		return errNotMemberRPC
	}
	for _, m := range rpc.GetPublish() {
		if !ok(m.GetTopic()) {
			return drop()
		}
	}
	if c := rpc.GetControl(); c != nil {
		for _, ih := range c.GetIhave() {
			if !ok(ih.GetTopicID()) {
				return drop()
			}
		}
		for _, g := range c.GetGraft() {
			if !ok(g.GetTopicID()) {
				return drop()
			}
		}
	}
	return nil
}

// subscribe joins a channel's topic with the record validator.
func (n *Node) subscribe(ch cid.Cid) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	if _, ok := n.topics[ch]; ok {
		return nil
	}
	topic := Topic(ch)
	// A validation waits for the disk (the writer's group commit) more
	// than it computes, so many run at once; gossipsub's default of 1024
	// per topic drops records of a burst as "throttled", for sync to
	// fetch again.
	if err := n.ps.RegisterTopicValidator(topic, n.validator(ch), pubsub.WithValidatorConcurrency(validatorConcurrency)); err != nil {
		return fmt.Errorf("channel %s: %w", ch, err)
	}
	t, err := n.ps.Join(topic)
	if err != nil {
		return fmt.Errorf("channel %s: %w", ch, err)
	}
	if err := t.SetScoreParams(topicScoreParams()); err != nil {
		t.Close()
		return fmt.Errorf("channel %s: score parameters: %w", ch, err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(queueSize))
	if err != nil {
		t.Close()
		return fmt.Errorf("channel %s: %w", ch, err)
	}
	n.topics[ch] = &channelTopic{topic: t, sub: sub}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Records are stored and announced by the validator; the
		// subscription only keeps the node in the mesh.
		for {
			if _, err := sub.Next(n.ctx); err != nil {
				return
			}
		}
	}()
	n.log.Debug("subscribed", "channel", ch)
	return nil
}

// unsubscribe leaves a channel's topic (after the node was removed).
func (n *Node) unsubscribe(ch cid.Cid) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.topics[ch]
	if t == nil {
		return
	}
	delete(n.topics, ch)
	t.sub.Cancel()
	t.topic.Close()
	_ = n.ps.UnregisterTopicValidator(Topic(ch))
}

// validator returns the gossipsub validator of a channel: the decision
// table of DESIGN.md section 6. An accepted record is durably stored before
// the validator returns, and so before gossipsub forwards it.
func (n *Node) validator(ch cid.Cid) func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if from == n.self {
			return pubsub.ValidationAccept // our own record, stored before publishing
		}
		_, err := n.ingest(ch, m.Data, from)
		switch {
		case err == nil:
			return pubsub.ValidationAccept
		case errors.Is(err, errIgnore):
			return pubsub.ValidationIgnore
		case errors.Is(err, ErrPendingChange):
			// A membership change ahead of this node: not the sender's
			// fault. Sync brings what it follows, in causal order.
			n.sync.schedule(from, ch)
			n.log.Debug("membership change pending", "channel", ch, "peer", from, "err", err)
			return pubsub.ValidationIgnore
		case errors.Is(err, ErrNotMember), errors.Is(err, ErrUnknownChannel):
			// Not stored, not forwarded. An honest forwarder may be ahead
			// of this node on membership: catch up from it, and hold it
			// against it only when a sync with it did not explain it.
			if n.refused(from, ch) {
				n.penalty.add(from, 1)
			}
			n.sync.schedule(from, ch)
			n.log.Debug("record refused", "channel", ch, "peer", from, "err", err)
			return pubsub.ValidationIgnore
		default:
			n.log.Debug("record rejected", "channel", ch, "peer", from, "err", err)
			return pubsub.ValidationReject
		}
	}
}

// errIgnore marks records that are neither accepted nor held against the
// sender: duplicates, fork evidence, records of a node shutting down.
var errIgnore = errors.New("ignored")

// ingest checks a received envelope and stores it: the validator's work,
// shared by every path a record comes in on. It returns errIgnore (wrapped)
// for duplicates and forks, and another error for a record to reject.
func (n *Node) ingest(ch cid.Cid, env []byte, from peer.ID) (*protocol.Signed, error) {
	if err := n.alive(); err != nil {
		return nil, fmt.Errorf("%w: %v", errIgnore, err)
	}
	s, err := n.checkReceived(ch, env, from)
	if err != nil {
		return nil, err
	}
	return s, n.store1(s, from)
}

// checkReceived is ingest's work before storage: the size limit, the duplicate
// check, the author's quota and every rule of check. It runs on a checker
// (see checkers).
func (n *Node) checkReceived(ch cid.Cid, env []byte, from peer.ID) (*protocol.Signed, error) {
	if !n.started.Load() {
		return n.verifyNow(ch, env, from)
	}
	j := &checkJob{ch: ch, env: env, from: from, done: make(chan struct{})}
	select {
	case n.checkQueue <- j:
	case <-n.ctx.Done():
		return nil, fmt.Errorf("%w: %v", errIgnore, errClosed)
	}
	select {
	case <-j.done:
		return j.s, j.err
	case <-n.ctx.Done(): // the checkers are gone or going
		return nil, fmt.Errorf("%w: %v", errIgnore, errClosed)
	}
}

func (n *Node) verifyNow(ch cid.Cid, env []byte, from peer.ID) (*protocol.Signed, error) {
	if len(env) > protocol.MaxEnvelopeSize {
		n.metrics.rejected.WithLabelValues("too_large").Inc()
		return nil, fmt.Errorf("envelope of %d bytes: %w", len(env), protocol.ErrTooLarge)
	}
	// Decoded once, unchecked: to look up the record before spending a
	// signature check on it, and for the author's quota.
	loaded, lerr := protocol.Load(env)
	var c cid.Cid
	dupCheck := true
	if lerr == nil {
		c = loaded.CID
		// A record beyond its author's contiguous head is new but for the
		// rare one held past a gap, which Put finds: no lookup for it.
		if head, err := n.store.Head(loaded.ChannelOf(), loaded.Record.Author); err == nil && loaded.Record.Seq > head {
			dupCheck = false
		}
	} else if cc, err := protocol.EnvelopeCID(env); err == nil {
		c = cc
	}
	if dupCheck && c.Defined() {
		if has, err := n.store.Has(c); err == nil && has {
			n.metrics.duplicates.Inc()
			return nil, fmt.Errorf("%w: %s already stored", errIgnore, c)
		}
	}
	if lerr != nil {
		loaded = nil // Open says what is wrong
	}
	if loaded != nil && from != n.self && n.quota.rate > 0 {
		// The quota is checked before the signature, so that a flood costs
		// a decode, not a verification, per record. Duplicates do not
		// count against it.
		if !n.quota.allow(loaded.ChannelOf(), loaded.Record.Author) {
			n.metrics.overQuota.Inc()
			return nil, fmt.Errorf("%w: %s is over its quota in %s", errIgnore, loaded.Record.Author, loaded.ChannelOf())
		}
	}
	s, err := n.check(ch, env, loaded)
	if err != nil {
		n.metrics.rejected.WithLabelValues(rejectReason(err)).Inc()
		return nil, err
	}
	return s, nil
}

// check runs every rule but storage on an envelope meant for channel ch.
// loaded, if not nil, is the envelope decoded by protocol.Load.
func (n *Node) check(ch cid.Cid, env []byte, loaded *protocol.Signed) (*protocol.Signed, error) {
	var s *protocol.Signed
	var err error
	if loaded != nil {
		s, err = protocol.OpenLoaded(loaded)
	} else {
		s, err = protocol.Open(env)
	}
	if err != nil {
		return nil, err
	}
	if got := s.ChannelOf(); ch.Defined() && got != ch {
		return nil, fmt.Errorf("%w: record of channel %s sent in channel %s", errWrongChannel, got, ch)
	}
	if err := n.gov.check(s); err != nil {
		return nil, err
	}
	if err := protocol.ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
		return nil, err
	}
	return s, nil
}

var errWrongChannel = errors.New("wrong channel")

// store1 writes a checked record and acts on the result.
func (n *Node) store1(s *protocol.Signed, from peer.ID) error {
	res, err := n.put(s)
	if err != nil {
		return fmt.Errorf("%w: store: %v", errIgnore, err)
	}
	switch res {
	case store.Duplicate:
		n.metrics.duplicates.Inc()
		return fmt.Errorf("%w: %s already stored", errIgnore, s.CID)
	case store.Forked:
		n.forked(s, from)
		return fmt.Errorf("%w: fork evidence %s", errIgnore, s.CID)
	}
	n.accepted(s)
	// A record beyond the author's contiguous head may show a gap.
	if from != n.self {
		n.noteGossip(from, s.ChannelOf())
		if head, err := n.store.Head(s.ChannelOf(), s.Record.Author); err == nil && head < s.Record.Seq {
			n.suspectGap(from, s.ChannelOf(), s.Record.Author, s.Record.Seq)
		}
	}
	return nil
}

// accepted updates the node's view after a record was durably stored.
func (n *Node) accepted(s *protocol.Signed) {
	n.metrics.accepted.Inc()
	if n.gov.apply(s) {
		ch := s.ChannelOf()
		switch {
		case n.gov.isJoined(ch):
			if err := n.subscribe(ch); err != nil && !errors.Is(err, errClosed) {
				n.log.Warn("cannot subscribe", "channel", ch, "err", err)
			}
		default:
			n.unsubscribe(ch)
		}
	}
	n.events.publish(s)
}

// rejectReason names the rule a rejected record broke, for the metrics.
func rejectReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{protocol.ErrTooLarge, "too_large"},
		{protocol.ErrBadSignature, "bad_signature"},
		{protocol.ErrAuthorMismatch, "author_mismatch"},
		{protocol.ErrBadEnvelope, "bad_envelope"},
		{protocol.ErrMalformed, "malformed"},
		{ErrUnknownChannel, "unknown_channel"},
		{ErrNotMember, "not_member"},
		{ErrRemoved, "removed"},
		{ErrNotAdmin, "not_admin"},
		{ErrPendingChange, "pending_change"},
		{errWrongChannel, "wrong_channel"},
		{protocol.ErrUnknownKind, "unknown_kind"},
		{protocol.ErrInvalidBody, "schema"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// grafted syncs with a peer shortly after it joins a channel's mesh:
// records published while the mesh was forming (after a restart or a
// reconnection) went to nobody, and nothing else would bring them before
// the next periodic sync.
func (n *Node) grafted(p peer.ID, topic string) {
	ch, ok := topicChannel(topic)
	if !ok {
		return
	}
	time.AfterFunc(graftSyncDelay, func() {
		if n.ctx.Err() == nil {
			n.sync.schedule(p, ch)
		}
	})
}

// graftSyncDelay is how long after a graft the node syncs with the peer:
// long enough for a record published in the race to be stored by its author.
const graftSyncDelay = 500 * time.Millisecond

// waitMesh waits until p is in the node's mesh for ch, or ctx ends. Records
// published before then may reach p only through sync.
func (n *Node) waitMesh(ctx context.Context, ch cid.Cid, p peer.ID) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !n.mesh.has(Topic(ch), p) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
