package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// cidSpy is a gossipsub tracer that records, at the RPC level, every record
// of one channel a peer receives, in any of the channel's topics (one per
// membership epoch), before any validation of its own could hide it.
type cidSpy struct {
	*spy // counts the publishes of spy.topic; the other methods do nothing
	ch   cid.Cid
	mu   sync.Mutex
	got  map[cid.Cid]string // record CID → topic it came in
}

func newCIDSpy(ch cid.Cid, other string) *cidSpy {
	return &cidSpy{spy: &spy{topic: other}, ch: ch, got: map[cid.Cid]string{}}
}

func (s *cidSpy) RecvRPC(rpc *pubsub.RPC) {
	for _, m := range rpc.GetPublish() {
		ch, ok := topicChannel(m.GetTopic())
		if !ok || ch != s.ch {
			continue
		}
		if c, err := protocol.EnvelopeCID(m.GetData()); err == nil {
			s.mu.Lock()
			s.got[c] = m.GetTopic()
			s.mu.Unlock()
		}
	}
	s.spy.RecvRPC(rpc)
}

// which returns the records of cs the spy saw.
func (s *cidSpy) which(cs []cid.Cid) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range cs {
		if topic, ok := s.got[c]; ok {
			out = append(out, c.String()+" in "+topic)
		}
	}
	return out
}

// rawSync sends a sync request for ch with empty heads from h to p, as an
// asker that holds nothing, and returns the refusal (empty if p answered)
// and the CIDs of the records p sent.
func rawSync(ctx context.Context, h host.Host, p peer.ID, ch cid.Cid) (string, []cid.Cid, error) {
	st, err := h.NewStream(ctx, p, SyncID)
	if err != nil {
		return "", nil, err
	}
	defer st.Close()
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	req, err := (&protocol.HeadsMessage{Channel: ch, Heads: protocol.Heads{}}).Encode()
	if err != nil {
		return "", nil, err
	}
	if err := writeFrame(st, req); err != nil {
		return "", nil, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	status, err := readFrame(r, 1024)
	if err != nil {
		return "", nil, err
	}
	if len(status) > 0 {
		return string(status), nil, nil
	}
	if _, err := readFrame(r, maxHeadsFrame); err != nil {
		return "", nil, err
	}
	var got []cid.Cid
	for {
		env, err := readFrame(r, protocol.MaxEnvelopeSize)
		if err != nil {
			return "", got, err
		}
		if len(env) == 0 {
			return "", got, nil
		}
		if c, err := protocol.EnvelopeCID(env); err == nil {
			got = append(got, c)
		}
	}
}

// rawFetch asks p for record c from h and returns p's status (empty if p
// served it) and the envelope.
func rawFetch(ctx context.Context, h host.Host, p peer.ID, c cid.Cid) (string, []byte, error) {
	st, err := h.NewStream(ctx, p, FetchID)
	if err != nil {
		return "", nil, err
	}
	defer st.Close()
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	if err := writeFrame(st, c.Bytes()); err != nil {
		return "", nil, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	status, err := readFrame(r, 1024)
	if err != nil {
		return "", nil, err
	}
	env, err := readFrame(r, protocol.MaxEnvelopeSize)
	return string(status), env, err
}

// admitAtB lets C and R connect to B again, as peers the operator
// configured, so that only the sync or fetch check stands between them and
// B's records of X.
func admitAtB(t *testing.T, f *removalFixture) {
	t.Helper()
	f.b.gater.extra.Store(f.c.ID(), true)
	f.b.gater.extra.Store(f.r.ID(), true)
	f.c.gater.extra.Store(f.b.ID(), true) // C dials B though it knows it was removed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.r.Connect(ctx, addrInfo(f.b)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.host.Connect(ctx, addrInfo(f.b)); err != nil {
		t.Fatal(err)
	}
}

func inMesh(n *Node, topic string, p peer.ID) bool { return n.mesh.has(topic, p) }

// removalFixture: A, B and C share channel X; A and C also share Y, so C
// stays connected to A. R is a bare libp2p host with gossipsub and a key of
// its own, a member of X and Y like C, that does nothing a node would do
// when it is removed: it stays subscribed to X's topic through the removal,
// joins the topic of the new membership epoch too, and asks for records by
// sync and by fetch. A removes C and R from X; then A and B publish in X.
type removalFixture struct {
	a, b, c *Node
	x, y    cid.Cid
	r       host.Host
	rSpy    *cidSpy
	rY      func() int64 // records of Y delivered to R
	before  *protocol.Signed
	after   []cid.Cid // published in X by A and B once both knew of the removal
	lastA   *protocol.Signed
	lastB   *protocol.Signed
	yAfter  *protocol.Signed
}

const removalN = 20

func newRemovalFixture(t *testing.T) *removalFixture {
	t.Helper()
	f := &removalFixture{}
	// C syncs every second, so that it tries sync many times in the test.
	f.a, f.b = startNode(t, "A"), startNode(t, "B")
	f.c = startNodeWith(t, "C", slog.LevelDebug, func(c *Config) { c.SyncInterval.Duration = time.Second })
	a, b, c := f.a, f.b, f.c
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f.x = link(t, a, b, "X")
	code, err := a.Invite(ctx, f.x, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	f.y = link(t, a, c, "Y")

	key, rID := newKey(t)
	addMember(t, a, f.x, rID)
	addMember(t, a, f.y, rID)
	waitFor(t, "B to learn that R is a member of X", 10*time.Second, func() bool { return b.gov.memberOf(f.x, rID) })
	f.r = bareHost(t, key)
	f.rSpy = newCIDSpy(f.x, Topic(f.y))
	ps := barePubSub(t, f.r, true, f.rSpy)
	joinCounting(t, ps, rID, Topic(f.x))
	_, yGot := joinCounting(t, ps, rID, Topic(f.y))
	f.rY = yGot.Load
	for _, n := range []*Node{a, b} {
		if err := f.r.Connect(ctx, addrInfo(n)); err != nil {
			t.Fatal(err)
		}
	}
	connectAll(t, []*Node{a, b, c})
	for _, n := range []*Node{a, b} {
		for _, p := range []peer.ID{c.ID(), rID} {
			waitFor(t, fmt.Sprintf("%s in %s's mesh of X", shortID(p), n.cfg.Name), 15*time.Second, func() bool { return inMesh(n, Topic(f.x), p) })
		}
	}
	waitFor(t, "R in A's mesh of Y", 15*time.Second, func() bool { return inMesh(a, Topic(f.y), rID) })

	// Before the removal, C and R receive X's records: the spy works.
	f.before = publishNotes(t, b, f.x, 1, "before")
	waitFor(t, "the record from before at C", 10*time.Second, func() bool { return has(c, f.before.CID) })
	waitFor(t, "the record from before at R", 10*time.Second, func() bool { return len(f.rSpy.which([]cid.Cid{f.before.CID})) == 1 })

	if err := a.RemoveMember(ctx, f.x, c.ID()); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveMember(ctx, f.x, rID); err != nil {
		t.Fatal(err)
	}
	// By gossip, or at the latest by the next sync (every 30 s): under a
	// loaded machine's gossip the latter.
	waitFor(t, "B to learn of the removals", 45*time.Second, func() bool {
		return !b.gov.memberOf(f.x, c.ID()) && !b.gov.memberOf(f.x, rID)
	})
	// R joins the topic of the new epoch as well, as a peer that learned
	// of the removal (or guessed the name) would.
	if topic := a.topicOf(f.x); topic != Topic(f.x) {
		joinCounting(t, ps, rID, topic)
	}

	for i := range removalN {
		s, err := a.Publish(ctx, f.x, "note", map[string]any{"text": fmt.Sprintf("from A after %d", i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.after, f.lastA = append(f.after, s.CID), s
		s, err = b.Publish(ctx, f.x, "note", map[string]any{"text": fmt.Sprintf("from B after %d", i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.after, f.lastB = append(f.after, s.CID), s
	}
	if f.yAfter, err = a.Publish(ctx, f.y, "note", map[string]any{"text": "Y after the removal"}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRemovedMember: once A removes C (and R) from X, what A and B publish
// in X reaches A and B and never C or R, by any layer, while C and R still
// receive Y. Each subtest fails if its layer alone leaks.
func TestRemovedMember(t *testing.T) {
	f := newRemovalFixture(t)
	a, b, c := f.a, f.b, f.c
	rID := f.r.ID()

	t.Run("members", func(t *testing.T) {
		for _, cs := range f.after {
			waitFor(t, "A and B to hold every record published after the removal", 20*time.Second, func() bool { return has(a, cs) && has(b, cs) })
		}
		// C and R are still connected to A, for Y, and receive its records.
		waitFor(t, "Y's record at C", 10*time.Second, func() bool { return has(c, f.yAfter.CID) })
		waitFor(t, "Y's record at R", 10*time.Second, func() bool { return f.rY() > 0 })
		if !a.connected(c.ID()) || !a.connected(rID) {
			t.Fatal("A dropped a peer it still shares Y with")
		}
		// B shares nothing with them any more.
		waitFor(t, "B to disconnect C and R", 10*time.Second, func() bool { return !b.connected(c.ID()) && !b.connected(rID) })
		// B learned their addresses when they connected; that does not
		// let them back in.
		for _, p := range []peer.ID{c.ID(), rID} {
			if !b.partners.has(p) {
				t.Fatalf("B did not keep the addresses of %s", p)
			}
			if b.gater.allowed(p) {
				t.Fatalf("B's gater admits %s, which shares nothing with B any more", p)
			}
		}
		// C may know of its removal by now, and then its own gater would
		// not dial B; it dials as a removed member that keeps trying would.
		c.gater.extra.Store(b.ID(), true)
		refused := metric(t, b, "sangsaeng_connections_refused_total")
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.host.Connect(dctx, addrInfo(b))
		dcancel()
		waitFor(t, "B to refuse C's dial", 5*time.Second, func() bool {
			return metric(t, b, "sangsaeng_connections_refused_total") > refused && !b.connected(c.ID())
		})
		// A record C signs now is refused.
		s := sealAs(t, c, f.x, "note", map[string]any{"text": "C after"})
		if _, err := a.ingest(f.x, s.Envelope, c.ID(), opGossip); !errors.Is(err, ErrRemoved) {
			t.Fatalf("a record of a removed member: %v", err)
		}
		if !has(c, f.before.CID) {
			t.Fatal("C lost the record from before its removal")
		}
	})

	t.Run("gossip", func(t *testing.T) {
		// R stays subscribed to X's old topic and to the new one and does
		// not sync: only gossip could bring it anything.
		stays(t, "R receiving nothing of X", 3*time.Second, func() bool { return len(f.rSpy.which(f.after)) == 0 })
		if got := f.rSpy.which(f.after); len(got) > 0 {
			t.Fatalf("R received %d of %d records by gossip: %v", len(got), len(f.after), got)
		}
		for _, n := range []*Node{a, b} {
			for _, topic := range []string{Topic(f.x), n.topicOf(f.x)} {
				if inMesh(n, topic, rID) || inMesh(n, topic, c.ID()) {
					t.Fatalf("%s keeps a removed peer in its mesh of %s", n.cfg.Name, topic)
				}
			}
		}
	})

	t.Run("sync", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admitAtB(t, f)
		for _, n := range []*Node{a, b} {
			why, got, err := rawSync(ctx, f.r, n.ID(), f.x)
			if err != nil {
				t.Fatalf("R's sync with %s: %v", n.cfg.Name, err)
			}
			if why == "" {
				t.Fatalf("%s answered R's sync of X with %d records", n.cfg.Name, len(got))
			}
			if _, err := c.syncWith(ctx, n.ID(), f.x); !errors.Is(err, errSyncRefused) {
				t.Fatalf("%s answered C's sync of X: %v", n.cfg.Name, err)
			}
		}
		for _, cs := range f.after {
			if has(c, cs) {
				t.Fatalf("C holds %s, published after its removal", cs)
			}
		}
	})

	t.Run("fetch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		admitAtB(t, f)
		for _, cs := range []cid.Cid{f.lastA.CID, f.lastB.CID, f.before.CID} {
			for _, n := range []*Node{a, b} {
				why, env, err := rawFetch(ctx, f.r, n.ID(), cs)
				if err != nil {
					t.Fatalf("R's fetch from %s: %v", n.cfg.Name, err)
				}
				if why == "" || len(env) > 0 {
					t.Fatalf("%s served R record %s of X", n.cfg.Name, cs)
				}
				if env, err := c.fetchFrom(ctx, n.ID(), cs); err == nil || len(env) > 0 {
					t.Fatalf("%s served C record %s of X", n.cfg.Name, cs)
				}
			}
			if cs != f.before.CID {
				if s, err := c.Fetch(ctx, cs); err == nil {
					t.Fatalf("C fetched %s", s.CID)
				}
			}
		}
		for _, cs := range f.after {
			if has(c, cs) {
				t.Fatalf("C holds %s, published after its removal", cs)
			}
		}
	})
}

// TestBadCopyDoesNotHideRecord: a hostile member of the mesh sends A a copy
// of a record with a broken signature before anyone sends the genuine one.
// The copy has the record's CID; the genuine record, sent next by another
// member, is still accepted over gossip at once, and A forwards it to B.
// Neither member serves sync, and A's periodic sync is an hour away, so
// only gossip can bring it.
func TestBadCopyDoesNotHideRecord(t *testing.T) {
	a := startNodeWith(t, "A", slog.LevelDebug, func(c *Config) { c.SyncInterval.Duration = time.Hour })
	b := startNodeWith(t, "B", slog.LevelDebug, func(c *Config) { c.SyncInterval.Duration = time.Hour })
	ch := link(t, a, b, "ab")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	author, authorID := newKey(t)
	addMember(t, a, ch, authorID)
	type peerOf struct {
		h  host.Host
		tp *pubsub.Topic
	}
	join := func(name string) peerOf {
		k, id := newKey(t)
		addMember(t, a, ch, id)
		h := bareHost(t, k)
		tp, err := barePubSub(t, h, true, &spy{}).Join(Topic(ch))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tp.Subscribe(); err != nil {
			t.Fatal(err)
		}
		if err := h.Connect(ctx, addrInfo(a)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" and A in each other's mesh", 15*time.Second, func() bool {
			return inMesh(a, Topic(ch), id) && slices.Contains(tp.ListPeers(), a.ID())
		})
		return peerOf{h, tp}
	}
	hostile, honest := join("the hostile member"), join("the honest member")
	waitFor(t, "B in A's mesh", 15*time.Second, func() bool { return inMesh(a, Topic(ch), b.ID()) })

	genuine := chain(t, author, ch, 0, cid.Undef, 1, "genuine")[0]
	bad := slices.Clone(genuine.Envelope)
	bad[len(bad)-1] ^= 0xff // the signature ends the envelope
	if c, err := protocol.EnvelopeCID(bad); err != nil || c != genuine.CID {
		t.Fatalf("the bad copy should carry the record's CID: %v %v", c, err)
	}
	if _, err := protocol.Open(bad); !errors.Is(err, protocol.ErrBadSignature) {
		t.Fatalf("the bad copy should fail on its signature: %v", err)
	}

	badSig := func() float64 { return metricValues(t, a, "sangsaeng_records_rejected_total")["bad_signature"] }
	before := badSig()
	if err := hostile.tp.Publish(ctx, bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to reject the bad copy", 10*time.Second, func() bool { return badSig() > before })
	if has(a, genuine.CID) {
		t.Fatal("A stored the bad copy")
	}
	if err := honest.tp.Publish(ctx, genuine.Envelope); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to accept the genuine record over gossip", 10*time.Second, func() bool { return has(a, genuine.CID) })
	waitFor(t, "A to forward it to B", 10*time.Second, func() bool { return has(b, genuine.CID) })
	if got := metric(t, a, "sangsaeng_sync_runs_total"); got > 0 {
		t.Logf("A ran %v syncs meanwhile (with B, which lacked the record)", got)
	}
}

// TestRemovedKeyHolderGetsNothing: C's own key, in a bare libp2p host with
// gossipsub that stays subscribed to X's topic through C's removal (and
// joins the new epoch's topic too), gets none of the records A and B
// publish in X afterwards, by gossip, sync or fetch, while it still gets Y.
func TestRemovedKeyHolderGetsNothing(t *testing.T) {
	a, b, c := startNode(t, "A"), startNode(t, "B"), startNode(t, "C")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := link(t, a, b, "X")
	code, err := a.Invite(ctx, x, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	y := link(t, a, c, "Y")
	waitFor(t, "B to know C", 10*time.Second, func() bool { return b.gov.memberOf(x, c.ID()) })
	// C's node stops; its key goes on in a bare host.
	key, id := c.key, c.ID()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A and B to see C's node go", 10*time.Second, func() bool { return !a.connected(id) && !b.connected(id) })
	h := bareHost(t, key)
	sp := newCIDSpy(x, Topic(y))
	ps := barePubSub(t, h, true, sp)
	joinCounting(t, ps, id, Topic(x))
	_, yGot := joinCounting(t, ps, id, Topic(y))
	for _, n := range []*Node{a, b} {
		if err := h.Connect(ctx, addrInfo(n)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "C's key in "+n.cfg.Name+"'s mesh of X", 15*time.Second, func() bool { return inMesh(n, Topic(x), id) })
	}
	waitFor(t, "C's key in A's mesh of Y", 15*time.Second, func() bool { return inMesh(a, Topic(y), id) })
	before := publishNotes(t, a, x, 1, "before")
	waitFor(t, "the record from before at C's key", 10*time.Second, func() bool { return len(sp.which([]cid.Cid{before.CID})) == 1 })

	if err := a.RemoveMember(ctx, x, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to learn of the removal", 15*time.Second, func() bool { return !b.gov.memberOf(x, id) })
	joinCounting(t, ps, id, a.topicOf(x))
	var after []cid.Cid
	for i := range removalN {
		for _, n := range []*Node{a, b} {
			s, err := n.Publish(ctx, x, "note", map[string]any{"text": fmt.Sprintf("from %s after %d", n.cfg.Name, i)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			after = append(after, s.CID)
		}
	}
	for _, cs := range after {
		waitFor(t, "A and B to hold every record published after the removal", 20*time.Second, func() bool { return has(a, cs) && has(b, cs) })
	}
	y0 := yGot.Load()
	publishNotes(t, a, y, 1, "Y after the removal")
	waitFor(t, "Y's record at C's key", 10*time.Second, func() bool { return yGot.Load() > y0 })
	waitFor(t, "B to disconnect C's key", 10*time.Second, func() bool { return !b.connected(id) })
	if !a.connected(id) {
		t.Fatal("A dropped C's key, with which it still shares Y")
	}
	stays(t, "C's key receiving nothing of X by gossip", 3*time.Second, func() bool { return len(sp.which(after)) == 0 })

	// Sync and fetch, at A and at B (which lets C's key connect again, as
	// an operator-configured peer, so that only those checks stand).
	b.gater.extra.Store(id, true)
	if err := h.Connect(ctx, addrInfo(b)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b} {
		why, got, err := rawSync(ctx, h, n.ID(), x)
		if err != nil || why == "" {
			t.Fatalf("%s answered the sync of X of C's key: %d records, %v", n.cfg.Name, len(got), err)
		}
		for _, cs := range append([]cid.Cid{before.CID}, after...) {
			why, env, err := rawFetch(ctx, h, n.ID(), cs)
			if err != nil || why == "" || len(env) > 0 {
				t.Fatalf("%s served C's key record %s of X (%q, %v)", n.cfg.Name, cs, why, err)
			}
		}
	}
	t.Logf("C's key after its removal: %d of %d records of X by gossip; sync and fetch refused by A and B", len(sp.which(after)), len(after))
}
