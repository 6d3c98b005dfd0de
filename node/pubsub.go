package node

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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
const GossipSubID = libp2pproto.ID("/sangsaeng/gossipsub/1.3.0")

// TopicPrefix starts every channel's pubsub topics.
const TopicPrefix = "/sangsaeng/ch/"

// Topic returns the pubsub topic of a channel from which nobody was ever
// removed: TopicPrefix + channel ID. See EpochTopic.
func Topic(ch cid.Cid) string { return TopicPrefix + ch.String() }

// EpochTopic returns the pubsub topic of a channel in a membership epoch:
// Topic(ch) for the empty epoch (nobody removed), else Topic(ch) + "/" +
// epoch. Every removal starts a new epoch, so a new topic with a new mesh
// that only peers admitted since the removal are in (see epochOf).
func EpochTopic(ch cid.Cid, epoch string) string {
	if epoch == "" {
		return Topic(ch)
	}
	return Topic(ch) + "/" + epoch
}

// epochLen is the length of an epoch name: 64 bits of hash in hex.
const epochLen = 16

// epochOf names the membership epoch of a channel whose removed members
// are removed: "" when there are none, else the first 64 bits, in hex, of
// the SHA-256 of "sangsaeng/epoch/1" and the removed peer IDs, sorted, each
// preceded by its length. Every node with the same view of the channel
// computes the same name.
func epochOf(removed []peer.ID) string {
	if len(removed) == 0 {
		return ""
	}
	ids := slices.Clone(removed)
	slices.Sort(ids)
	h := sha256.New()
	h.Write([]byte("sangsaeng/epoch/1"))
	for _, p := range ids {
		var l [binary.MaxVarintLen64]byte
		h.Write(l[:binary.PutUvarint(l[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:epochLen]
}

// topicOf returns the topic of ch in the node's current view of its
// membership.
func (n *Node) topicOf(ch cid.Cid) string {
	return EpochTopic(ch, epochOf(n.gov.removedFrom(ch)))
}

// topicChannel returns the channel of a topic (of any epoch), or false for
// a foreign topic.
func topicChannel(topic string) (cid.Cid, bool) {
	s, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return cid.Undef, false
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		e := s[i+1:]
		if len(e) != epochLen || strings.Trim(e, "0123456789abcdef") != "" {
			return cid.Undef, false
		}
		s = s[:i]
	}
	c, err := cid.Decode(s)
	return c, err == nil
}

// queueSize replaces gossipsub's default queues of 32, which drop messages
// under bursts well below capacity (docs/design.md, "Network").
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

// messageID is the SHA-256 of the topic and the whole envelope, signature
// included. The record's CID would not do: a peer that sends a copy of a
// record with a broken signature first would get the genuine copy, which
// has the same CID, dropped as already seen. The validator checks the CID
// inside, and a second genuine copy of a stored record costs it a store
// lookup. The topic is in it because gossipsub's seen-cache is one for all
// topics, and a membership record is published in the topics of two epochs
// (see broadcast).
func messageID(m *pb.Message) string {
	h := sha256.New()
	topic := m.GetTopic()
	var l [binary.MaxVarintLen64]byte
	h.Write(l[:binary.PutUvarint(l[:], uint64(len(topic)))])
	h.Write([]byte(topic))
	h.Write(m.Data)
	return string(h.Sum(nil))
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

// subscribe makes the node's subscription of ch match its view of the
// channel: the topic of the current membership epoch, with the record
// validator, while the node is an active member; none once it is not.
//
// When the epoch changes (a member was removed) the node leaves the old
// topic's mesh before anything else is published: the removed peer may be
// in that mesh, and go-libp2p-pubsub asks the peer filter when a peer
// grafts, not when it forwards to a peer already in the mesh. The new
// topic's mesh is built from scratch, and every peer in it passed
// peerFilter with the removal known. The old topic is kept, unsubscribed,
// for retiredTopicTTL, to send the membership records that started the
// new epoch to members who have not learned of them yet (over gossipsub's
// fanout, which also asks peerFilter, so never to a removed peer).
func (n *Node) subscribe(ch cid.Cid) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	want := ""
	if n.gov.isJoined(ch) {
		want = n.topicOf(ch)
	}
	cur := n.topics[ch]
	if cur != nil && cur.name == want {
		return nil
	}
	if cur != nil {
		delete(n.topics, ch)
		n.retireLocked(ch, cur)
	}
	if want == "" {
		return nil
	}
	t, err := n.joinLocked(ch, want)
	if err != nil {
		return err
	}
	n.topics[ch] = t
	return nil
}

// retiredTopicTTL is how long the node keeps the topic of a past epoch to
// send membership records in it.
const retiredTopicTTL = 2 * time.Minute

// retiredTopic is the topic of a channel's past epoch.
type retiredTopic struct {
	ch    cid.Cid
	topic *pubsub.Topic
}

// joinLocked joins topic for ch with the record validator. n.mu is held.
func (n *Node) joinLocked(ch cid.Cid, topic string) (*channelTopic, error) {
	// A validation waits for the disk (the writer's group commit) more
	// than it computes, so many run at once; gossipsub's default of 1024
	// per topic drops records of a burst as "throttled", for sync to
	// fetch again.
	if err := n.ps.RegisterTopicValidator(topic, n.validator(ch), pubsub.WithValidatorConcurrency(validatorConcurrency)); err != nil {
		return nil, fmt.Errorf("channel %s: %w", ch, err)
	}
	fail := func(err error) (*channelTopic, error) {
		_ = n.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("channel %s: %w", ch, err)
	}
	t := n.retired[topic].topic // the epoch came back: reuse its handle
	if t != nil {
		delete(n.retired, topic)
	} else {
		var err error
		if t, err = n.ps.Join(topic); err != nil {
			return fail(err)
		}
		if err := t.SetScoreParams(topicScoreParams()); err != nil {
			t.Close()
			return fail(fmt.Errorf("score parameters: %w", err))
		}
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(queueSize))
	if err != nil {
		t.Close()
		return fail(err)
	}
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
	n.log.Debug("subscribed", "channel", ch, "topic", topic)
	return &channelTopic{topic: t, sub: sub, name: topic}, nil
}

// retireLocked leaves t's mesh and keeps its handle for retiredTopicTTL.
// n.mu is held.
func (n *Node) retireLocked(ch cid.Cid, t *channelTopic) {
	t.sub.Cancel()
	_ = n.ps.UnregisterTopicValidator(t.name)
	n.log.Debug("left topic", "channel", ch, "topic", t.name)
	if n.retired == nil {
		n.retired = map[string]retiredTopic{}
	}
	n.retired[t.name] = retiredTopic{ch: ch, topic: t.topic}
	time.AfterFunc(retiredTopicTTL, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if r, ok := n.retired[t.name]; ok && r.topic == t.topic {
			delete(n.retired, t.name)
			_ = t.topic.Close()
		}
	})
}

// validator returns the gossipsub validator of a channel: the decision
// table in docs/design.md ("Enforcement"). An accepted record is durably
// stored before the validator returns, and so before gossipsub forwards it.
func (n *Node) validator(ch cid.Cid) func(context.Context, peer.ID, *pubsub.Message) pubsub.ValidationResult {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		if from == n.self {
			return pubsub.ValidationAccept // our own record, stored before publishing
		}
		var err error
		if protocol.IsBundle(m.Data) {
			err = n.ingestBundle(ch, m.Data, from)
		} else {
			_, err = n.ingest(ch, m.Data, from, opGossip)
		}
		switch {
		case err == nil:
			return pubsub.ValidationAccept
		case isStoreFailure(err):
			// Not held, so neither delivered nor forwarded as if it
			// were; not the sender's fault. Counted and logged by
			// storeFailed; the sync that noteGossip schedules, or the
			// periodic one, brings the record again.
			n.noteGossip(from, ch)
			return pubsub.ValidationIgnore
		case errors.Is(err, errIgnore):
			return pubsub.ValidationIgnore
		case errors.Is(err, ErrKeyLogFork):
			// The other side of a forked key log: an honest relay may
			// hold it first; neither stored nor forwarded here.
			n.log.Warn("a keys record forks its author's key log from the one held", "channel", ch, "peer", from, "err", err)
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

// errOverQuota marks a record over its author's quota (see quotas): not
// stored, not held against the sender, and a bundle that holds one is
// not forwarded, so the quota bounds how far a flood spreads as well as
// what it costs here.
var errOverQuota = fmt.Errorf("%w: over quota", errIgnore)

// singleSignatureCost is what a record with a signature of its own costs
// of its author's quota, against 1 for a record of a batch: one ed25519
// check (80 µs here) against the hashes of a proof. With the default
// quota of 20,000, an author sends 5,000 records a second signed one by
// one, as before batches, or 20,000 in batches.
const singleSignatureCost = 4

// ingest checks a received envelope and stores it: the validator's work,
// shared by every path a record comes in on. It returns errIgnore (wrapped)
// for duplicates and forks, a *storeFailure (wrapping errIgnore) when the
// store failed, and another error for a record to reject. op names the
// path, for the count of store failures.
func (n *Node) ingest(ch cid.Cid, env []byte, from peer.ID, op string) (*protocol.Signed, error) {
	if err := n.alive(); err != nil {
		return nil, fmt.Errorf("%w: %v", errIgnore, err)
	}
	s, err := n.checkReceived(ch, env, from, op)
	if err != nil {
		return nil, err
	}
	return s, n.store1(s, from, op)
}

// ingestBundle is ingest for a bundle of envelopes (protocol.EncodeBundle):
// each is checked and stored as ingest would, the checks on every core
// (the first alone, so that a batch's signature is verified once and the
// others find it in protocol's memo), the writes in one group commit. A
// valid record is kept whatever the others are. What it returns decides
// the bundle's fate as ingest's error decides a single record's: the
// worst of the records' errors (rejection, then membership, a pending
// change, a forked key log, a store failure), else nil if it stored any.
func (n *Node) ingestBundle(ch cid.Cid, msg []byte, from peer.ID) error {
	if err := n.alive(); err != nil {
		return fmt.Errorf("%w: %v", errIgnore, err)
	}
	envs, err := protocol.DecodeBundle(msg)
	if err != nil {
		n.metrics.rejected.WithLabelValues(rejectReason(err)).Inc()
		return err
	}
	checked := make([]*protocol.Signed, len(envs))
	errs := make([]error, len(envs))
	checked[0], errs[0] = n.checkReceived(ch, envs[0], from, opGossip)
	// The rest go to the checkers from this goroutine, which then waits
	// for them: no goroutine of its own for each.
	jobs := make([]*checkJob, len(envs))
	for i := 1; i < len(envs); i++ {
		if jobs[i], errs[i] = n.queueCheck(ch, envs[i], from, opGossip); errs[i] != nil {
			break
		}
	}
	for i := 1; i < len(envs); i++ {
		switch {
		case jobs[i] != nil:
			checked[i], errs[i] = n.waitCheck(jobs[i])
		case errs[i] == nil:
			errs[i] = fmt.Errorf("%w: %v", errIgnore, errClosed)
		}
	}
	var good []*protocol.Signed
	var at []int
	for i, s := range checked {
		if errs[i] == nil {
			good, at = append(good, s), append(at, i)
		}
	}
	res, perr := n.putAll(good)
	var stored []*protocol.Signed
	for k, s := range good {
		errs[at[k]] = n.storedThen(s, res[k], perr[k], from, opGossip, func(s *protocol.Signed) { stored = append(stored, s) })
	}
	n.acceptedAll(stored)
	worst, rank, rejected := error(nil), len(bundleErrorRank)+1, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		r := len(bundleErrorRank) // errIgnore and the like
		for k, is := range bundleErrorRank {
			if is(err) {
				r = k
				break
			}
		}
		if r == 0 && statelessReject(err) {
			rejected++
		}
		if r < rank {
			worst, rank = err, r
		}
	}
	// Gossipsub counts one invalid delivery for a rejected bundle; the
	// node's own penalty counts each record in it that is bad by itself,
	// whatever the node knows (statelessReject), so a bundle of 256 forged
	// records costs its sender what 256 would, and an honest forwarder
	// that has not yet learned of a revocation or a removal pays once.
	if rejected > 1 {
		n.penalty.add(from, float64(rejected-1))
	}
	if rank < len(bundleErrorRank) || len(stored) == 0 {
		return worst
	}
	return nil
}

// statelessReject reports whether a rejected record is bad by itself: its
// bytes, signature or schema, which no state of the node's explains.
func statelessReject(err error) bool {
	for _, e := range []error{protocol.ErrTooLarge, protocol.ErrBadSignature, protocol.ErrBadEnvelope, protocol.ErrAuthorMismatch,
		protocol.ErrMalformed, protocol.ErrUnknownKind, protocol.ErrInvalidBody, errWrongChannel} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// bundleErrorRank orders the errors of a bundle's records, worst first:
// a record to reject (any error not of the classes after it), then the
// membership refusals, a pending change, a forked key log and a store
// failure, then a record over its author's quota (errOverQuota: the
// bundle is not forwarded). errIgnore alone (duplicates) does not stop a
// bundle that brought something new.
var bundleErrorRank = []func(error) bool{
	func(err error) bool {
		return !errors.Is(err, errIgnore) && !errors.Is(err, ErrNotMember) && !errors.Is(err, ErrUnknownChannel) &&
			!errors.Is(err, ErrPendingChange) && !errors.Is(err, ErrKeyLogFork)
	},
	func(err error) bool { return errors.Is(err, ErrNotMember) || errors.Is(err, ErrUnknownChannel) },
	func(err error) bool { return errors.Is(err, ErrPendingChange) },
	func(err error) bool { return errors.Is(err, ErrKeyLogFork) },
	isStoreFailure,
	func(err error) bool { return errors.Is(err, errOverQuota) },
}

// checkReceived is ingest's work before storage: the size limit, the duplicate
// check, the author's quota and every rule of check. It runs on a checker
// (see checkers).
func (n *Node) checkReceived(ch cid.Cid, env []byte, from peer.ID, op string) (*protocol.Signed, error) {
	j, err := n.queueCheck(ch, env, from, op)
	if err != nil {
		return nil, err
	}
	return n.waitCheck(j)
}

// queueCheck hands an envelope to the checkers, or, before they run (the
// node not started), checks it now.
func (n *Node) queueCheck(ch cid.Cid, env []byte, from peer.ID, op string) (*checkJob, error) {
	j := &checkJob{ch: ch, env: env, from: from, op: op, done: make(chan struct{})}
	if !n.started.Load() {
		j.s, j.err = n.verifyNow(ch, env, from, op)
		close(j.done)
		return j, nil
	}
	select {
	case n.checkQueue <- j:
		return j, nil
	case <-n.ctx.Done():
		return nil, fmt.Errorf("%w: %v", errIgnore, errClosed)
	}
}

// waitCheck waits for a checker to finish j.
func (n *Node) waitCheck(j *checkJob) (*protocol.Signed, error) {
	select {
	case <-j.done:
		return j.s, j.err
	case <-n.ctx.Done(): // the checkers are gone or going
		return nil, fmt.Errorf("%w: %v", errIgnore, errClosed)
	}
}

func (n *Node) verifyNow(ch cid.Cid, env []byte, from peer.ID, op string) (*protocol.Signed, error) {
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
	quota := loaded != nil && from != n.self && op == opGossip && n.quota.rate > 0
	shared := quota && protocol.SharesSignature(env)
	if quota {
		// The quota is checked before the signature, so that a flood costs
		// a decode, not a verification, per record. Duplicates do not
		// count against it. A record signed alone costs what its check
		// costs, singleSignatureCost; one of a batch costs 1, and the rest
		// of singleSignatureCost when its batch's signature was not
		// verified before (below): a record sent from each of many batches
		// pays for the check it makes the node do.
		cost := singleSignatureCost
		if shared {
			cost = 1
		}
		if !n.quota.allow(loaded.ChannelOf(), loaded.Record.Author, cost) {
			n.metrics.overQuota.Inc()
			return nil, fmt.Errorf("%w: %s is over its quota in %s", errOverQuota, loaded.Record.Author, loaded.ChannelOf())
		}
	}
	s, err := n.check(ch, env, loaded)
	if shared && (err == nil || errors.Is(err, protocol.ErrBadSignature)) && (s == nil || !s.Memoized) {
		n.quota.charge(loaded.ChannelOf(), loaded.Record.Author, singleSignatureCost-1)
	}
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
	// Any key may have signed it: the author's key log says whether that
	// key signs for the author there (gov.check).
	if loaded != nil {
		s, err = protocol.OpenLoadedDelegated(loaded)
	} else {
		s, err = protocol.OpenDelegated(env)
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
func (n *Node) store1(s *protocol.Signed, from peer.ID, op string) error {
	res, err := n.put(s)
	return n.stored(s, res, err, from, op)
}

// stored acts on the result of writing a checked record.
func (n *Node) stored(s *protocol.Signed, res store.Result, err error, from peer.ID, op string) error {
	return n.storedThen(s, res, err, from, op, n.accepted)
}

// storedThen is stored with accept in place of accepted: a bundle's
// records are accepted together, once all are written.
func (n *Node) storedThen(s *protocol.Signed, res store.Result, err error, from peer.ID, op string, accept func(*protocol.Signed)) error {
	if err != nil {
		return fmt.Errorf("%w: %w", errIgnore, n.storeFailed(op, err))
	}
	switch res {
	case store.Duplicate:
		n.metrics.duplicates.Inc()
		return fmt.Errorf("%w: %s already stored", errIgnore, s.CID)
	case store.Forked:
		n.forked(s, from)
		return fmt.Errorf("%w: fork evidence %s", errIgnore, s.CID)
	}
	accept(s)
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
func (n *Node) accepted(s *protocol.Signed) { n.acceptedAll([]*protocol.Signed{s}) }

// acceptedAll is accepted for records stored together, in order: their
// links are checked with one look in the store for what links to them.
func (n *Node) acceptedAll(ss []*protocol.Signed) {
	for _, s := range ss {
		n.acceptedOwn(s)
		n.checkLinksOf(s)
	}
	n.checkLinksTo(ss)
}

// acceptedOwn is accepted for a record the node has just signed: publish
// checked its links, and nothing can link to a record before it exists.
func (n *Node) acceptedOwn(s *protocol.Signed) {
	n.metrics.accepted.Inc()
	if n.gov.apply(s) {
		ch := s.ChannelOf()
		if err := n.subscribe(ch); err != nil && !errors.Is(err, errClosed) {
			n.log.Warn("cannot subscribe", "channel", ch, "err", err)
		}
		n.closeRemoved(ch)
	}
	n.events.publish(s)
}

// checkLinksOf and checkLinksTo check, once records are held, the links
// between them and the records the node holds that their kinds' rules
// constrain: their own links to them (checkLinksOf), and theirs to them,
// a link made before the node held its target (checkLinksTo). A partner's
// record is not refused for a wrong link (its chain would stall every
// member's sync); the mismatch is counted in
// sangsaeng_link_mismatches_total and logged.
func (n *Node) checkLinksOf(s *protocol.Signed) {
	for _, l := range s.Record.Links {
		if l.Rel == protocol.RelAfter || !protocol.HasLinkRules(s.Record.Kind) {
			continue
		}
		if t, err := n.store.Get(l.CID); err == nil {
			if err := protocol.CheckLinkTarget(s.Record, l.Rel, t); err != nil {
				n.linkMismatch(s, l.Rel, err)
			}
		} else if err := protocol.CheckLinkRel(s.Record.Kind, l.Rel); err != nil {
			n.linkMismatch(s, l.Rel, err)
		}
	}
}

func (n *Node) checkLinksTo(ss []*protocol.Signed) {
	targets := make([]cid.Cid, len(ss))
	for i, s := range ss {
		targets[i] = s.CID
	}
	bls, err := n.store.BacklinksOf(targets)
	if err != nil {
		return
	}
	batch := make(map[cid.Cid]bool, len(ss))
	for _, s := range ss {
		batch[s.CID] = true
	}
	for _, s := range ss {
		for _, b := range bls[s.CID] {
			if b.Rel == protocol.RelAfter || batch[b.From] {
				continue // a link of the batch's own: checkLinksOf saw it
			}
			from, err := n.store.Get(b.From)
			if err != nil {
				continue
			}
			if err := protocol.CheckLinkTarget(from.Record, b.Rel, s); err != nil {
				n.linkMismatch(from, b.Rel, err)
			}
		}
	}
}

func (n *Node) linkMismatch(from *protocol.Signed, rel string, err error) {
	n.metrics.linkMismatches.Inc()
	n.log.Warn("a record's link breaks its kind's rules", "cid", from.CID, "rel", rel, "err", err)
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
		{protocol.ErrKeyNotInForce, "key_not_in_force"},
		{ErrKeyLogFork, "key_log_fork"},
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
	for !n.mesh.has(n.topicOf(ch), p) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
