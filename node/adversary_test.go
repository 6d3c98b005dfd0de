package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// Adversaries for the tests of docs/design.md ("Guarantees"): bare libp2p
// hosts that run whatever gossipsub or sync they like, with keys that are
// members of a channel or of none.

// newKey returns a fresh ed25519 identity.
func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

// bareHost is a plain libp2p host on loopback TCP and QUIC with Noise and
// yamux, no connection gater and no resource limits: what anyone on the
// internet can run.
func bareHost(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	h := newBareHost(t, key)
	t.Cleanup(func() { h.Close() })
	return h
}

// newBareHost is bareHost that the caller must close.
func newBareHost(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// spy is a gossipsub tracer that counts what a peer receives in a topic at
// the RPC level, before any validation or signature policy of its own could
// hide it: published messages, and message IDs announced in IHAVE gossip.
type spy struct {
	topic    string
	msgs     atomic.Int64
	ihave    atomic.Int64
	sent     atomic.Int64 // messages this peer sent in RPCs
	dropped  atomic.Int64 // RPCs its own outbound queue dropped
	rpcsRecv atomic.Int64
}

var _ pubsub.RawTracer = (*spy)(nil)

func (s *spy) RecvRPC(rpc *pubsub.RPC) {
	s.rpcsRecv.Add(1)
	for _, m := range rpc.GetPublish() {
		if m.GetTopic() == s.topic {
			s.msgs.Add(1)
		}
	}
	for _, ih := range rpc.GetControl().GetIhave() {
		if ih.GetTopicID() == s.topic {
			s.ihave.Add(int64(len(ih.GetMessageIDs())))
		}
	}
}

func (s *spy) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	s.sent.Add(int64(len(rpc.GetPublish())))
}
func (s *spy) DropRPC(*pubsub.RPC, peer.ID)                { s.dropped.Add(1) }
func (s *spy) AddPeer(peer.ID, libp2pproto.ID)             {}
func (s *spy) RemovePeer(peer.ID)                          {}
func (s *spy) Join(string)                                 {}
func (s *spy) Leave(string)                                {}
func (s *spy) Graft(peer.ID, string)                       {}
func (s *spy) Prune(peer.ID, string)                       {}
func (s *spy) ValidateMessage(*pubsub.Message)             {}
func (s *spy) DeliverMessage(*pubsub.Message)              {}
func (s *spy) RejectMessage(*pubsub.Message, string)       {}
func (s *spy) DuplicateMessage(*pubsub.Message)            {}
func (s *spy) ThrottlePeer(peer.ID)                        {}
func (s *spy) UndeliverableMessage(*pubsub.Message)        {}
func (s *spy) OnNewOutboundStream(peer.ID, libp2pproto.ID) {}
func (s *spy) OnClosedOutboundStream(peer.ID)              {}

// barePubSub runs gossipsub on h: with go-libp2p-pubsub's defaults when ours
// is false (default protocol IDs, signed messages), or else as a sangsaeng
// node runs it (our protocol ID, no gossipsub signatures, the record CID as
// message ID), but without any of the node's checks. Big queues, so that a
// flooding adversary loses nothing on its own side.
func barePubSub(t testing.TB, h host.Host, ours bool, tr pubsub.RawTracer) *pubsub.PubSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return barePubSubCtx(t, ctx, h, ours, tr)
}

// barePubSubCtx is barePubSub that runs until ctx ends.
func barePubSubCtx(t testing.TB, ctx context.Context, h host.Host, ours bool, tr pubsub.RawTracer) *pubsub.PubSub {
	t.Helper()
	opts := []pubsub.Option{pubsub.WithRawTracer(tr), pubsub.WithPeerOutboundQueueSize(1 << 14), pubsub.WithValidateQueueSize(1 << 14)}
	if ours {
		features := func(f pubsub.GossipSubFeature, p libp2pproto.ID) bool {
			return p == GossipSubID && (f == pubsub.GossipSubFeatureMesh || f == pubsub.GossipSubFeatureIdontwant)
		}
		opts = append(opts,
			pubsub.WithGossipSubProtocols([]libp2pproto.ID{GossipSubID}, features),
			pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
			pubsub.WithNoAuthor(),
			pubsub.WithMessageIdFn(messageID),
			pubsub.WithMaxMessageSize(protocol.MaxEnvelopeSize+64<<10),
		)
	}
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// joinCounting joins topic on ps and counts the messages from others
// delivered to the subscription.
func joinCounting(t testing.TB, ps *pubsub.PubSub, self peer.ID, topic string) (*pubsub.Topic, *atomic.Int64) {
	t.Helper()
	tp, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); sub.Cancel() })
	var k atomic.Int64
	go func() {
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom != self {
				k.Add(1)
			}
		}
	}()
	return tp, &k
}

// addrInfo returns how to dial a node.
func addrInfo(n *Node) peer.AddrInfo { return peer.AddrInfo{ID: n.ID(), Addrs: n.host.Addrs()} }

// addMember makes p a member of ch, which admin administers.
func addMember(t testing.TB, admin *Node, ch cid.Cid, p peer.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.AddMember(ctx, ch, p); err != nil {
		t.Fatal(err)
	}
}

// chain signs k records in ch as the author of key, seq from+1 on, each
// linking to the one before (prev is the record before the first, or
// cid.Undef).
func chain(t testing.TB, key crypto.PrivKey, ch cid.Cid, from uint64, prev cid.Cid, k int, text string) []*protocol.Signed {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*protocol.Signed, k)
	for i := range k {
		r := &protocol.Record{Channel: ch, Author: id, Seq: from + uint64(i) + 1, Prev: prev, Time: time.Now().UnixMilli(),
			Kind: "note", Body: map[string]any{"text": text}}
		s, err := protocol.Seal(r, key)
		if err != nil {
			t.Fatal(err)
		}
		out[i], prev = s, s.CID
	}
	return out
}

// chainBatch is chain with the records signed in batches of size
// (protocol.SealBatch), as a publisher signs a burst.
func chainBatch(t testing.TB, key crypto.PrivKey, ch cid.Cid, from uint64, prev cid.Cid, k, size int, text string) []*protocol.Signed {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var out []*protocol.Signed
	for len(out) < k {
		var recs []*protocol.Record
		for i := 0; i < size && len(out)+i < k; i++ {
			r := &protocol.Record{Channel: ch, Author: id, Seq: from + uint64(len(out)+i) + 1, Prev: prev, Time: time.Now().UnixMilli(),
				Kind: "note", Body: map[string]any{"text": text}}
			b, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			recs, prev = append(recs, r), protocol.Sum(b)
		}
		batch, err := protocol.SealBatch(recs, key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, batch...)
	}
	return out
}

// rawPayload signs record bytes in a record envelope without Seal's check
// that the key is the author's: what a forger can do.
type rawPayload struct{ b []byte }

func (p *rawPayload) Domain() string                 { return protocol.EnvelopeDomain }
func (p *rawPayload) Codec() []byte                  { return []byte{0x71} }
func (p *rawPayload) MarshalRecord() ([]byte, error) { return p.b, nil }
func (p *rawPayload) UnmarshalRecord(b []byte) error { p.b = b; return nil }

// forgeAs signs r, which names another author, with key.
func forgeAs(t testing.TB, r *protocol.Record, key crypto.PrivKey) []byte {
	t.Helper()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	env, err := record.Seal(&rawPayload{b: b}, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// serveSync makes h answer every sync request as a (possibly lying)
// partner would: an empty status, a heads message for ch, the frames of
// answer (envelopes, or anything else), and the empty end frame. It
// returns the count of answers sent: the node also syncs on its own, when
// it connects.
func serveSync(h host.Host, ch cid.Cid, heads protocol.Heads, answer func() [][]byte) *atomic.Int64 {
	var served atomic.Int64
	h.SetStreamHandler(SyncID, func(st network.Stream) {
		defer st.Close()
		if _, err := readFrame(bufio.NewReader(st), maxHeadsFrame); err != nil {
			st.Reset()
			return
		}
		hm, err := (&protocol.HeadsMessage{Channel: ch, Heads: heads}).Encode()
		if err != nil {
			st.Reset()
			return
		}
		w := bufio.NewWriter(st)
		_ = writeFrame(w, nil)
		_ = writeFrame(w, hm)
		for _, f := range answer() {
			if err := writeFrame(w, f); err != nil {
				st.Reset()
				return
			}
		}
		_ = writeFrame(w, nil)
		if w.Flush() == nil {
			served.Add(1)
		}
	})
	return &served
}

// metricValues returns the values of a metric family of n, by the value of
// its one label ("" for a metric without labels).
func metricValues(t testing.TB, n *Node, name string) map[string]float64 {
	t.Helper()
	fams, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			label := ""
			if l := m.GetLabel(); len(l) > 0 {
				label = l[0].GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				out[label] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[label] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// metric returns the total of a metric of n over its labels.
func metric(t testing.TB, n *Node, name string) float64 {
	t.Helper()
	var sum float64
	for _, v := range metricValues(t, n, name) {
		sum += v
	}
	return sum
}

// diff returns after − before, by label, leaving out zeros.
func diff(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// stays checks that cond holds throughout d: for negative assertions, which
// need a window in which the thing could have happened.
func stays(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s no longer holds", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startNodeWith starts a node like startNode, with mod applied to its
// config and its log at level (floods make debug logs huge).
func startNodeWith(t testing.TB, name string, level slog.Level, mod func(*Config)) *Node {
	t.Helper()
	return startNodeLog(t, name, level, mod, testLogWriter{t})
}

// startNodeLog is startNodeWith with the node's log written to w.
func startNodeLog(t testing.TB, name string, level slog.Level, mod func(*Config), w io.Writer) *Node {
	t.Helper()
	cfg, err := Init(t.TempDir(), InitOptions{
		Name:   name,
		Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		API:    "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MDNS = false
	if mod != nil {
		mod(cfg)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("company", name)
	if _, fuzz := t.(*testing.F); fuzz {
		log = slog.New(slog.DiscardHandler) // F.Log may not be called while fuzzing
	}
	n, err := New(cfg, WithLogger(log), WithoutNATPortMap())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// logLines keeps the lines of a node's log, and passes them on to the
// test's log.
type logLines struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Log(line)
	return len(p), nil
}

// matching returns the lines that contain every one of subs.
func (l *logLines) matching(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// deliver hands data to n's validator for ch as a gossip message from
// from, as gossipsub would, and returns the validator's verdict.
func deliver(ctx context.Context, n *Node, ch cid.Cid, from peer.ID, data []byte) pubsub.ValidationResult {
	topic := Topic(ch)
	m := &pubsub.Message{Message: &pb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
	return n.validator(ch)(ctx, from, m)
}
