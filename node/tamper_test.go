package node

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// tamperedN is the number of valid envelopes that get one bit flipped.
const tamperedN = 10_000

// hostileSet is what a malicious member throws at an honest node: records
// signed by a non-member, records naming another author than the key that
// signed them, a record of another channel, and tamperedN valid envelopes
// with one random bit flipped each.
type hostileSet struct {
	forged   [][]byte // valid signatures, not acceptable
	tampered [][]byte
	bases    []cid.Cid // CIDs of the records the tampered envelopes came from
}

func (h *hostileSet) all() [][]byte { return append(slices.Clone(h.forged), h.tampered...) }

// makeHostile builds the hostile set for channel ch of admin a. The keys
// in members become members of ch; mal is the malicious member.
func makeHostile(t *testing.T, a *Node, ch, other cid.Cid, mal crypto.PrivKey, seed uint64) *hostileSet {
	t.Helper()
	var members []crypto.PrivKey
	for range 3 {
		k, id := newKey(t)
		addMember(t, a, ch, id)
		members = append(members, k)
	}
	members = append(members, mal)
	outsider, _ := newKey(t)
	h := &hostileSet{}

	// Signed by a non-member: a good signature, the wrong signer.
	for _, s := range chain(t, outsider, ch, 0, cid.Undef, 20, "not a member") {
		h.forged = append(h.forged, s.Envelope)
	}
	// Signed by the malicious member, claiming to be another member, or
	// the admin itself.
	for _, claimed := range []peer.ID{peerOf(t, members[0]), a.ID()} {
		for seq := range 10 {
			r := &protocol.Record{Channel: ch, Author: claimed, Seq: uint64(seq) + 1000, Prev: protocol.Sum([]byte{byte(seq)}),
				Time: 1, Kind: "note", Body: map[string]any{"text": "ship everything to the forger"}}
			h.forged = append(h.forged, forgeAs(t, r, mal))
		}
	}
	// A valid record of another channel, replayed into this one.
	for _, s := range chain(t, mal, other, 0, cid.Undef, 10, "wrong channel") {
		h.forged = append(h.forged, s.Envelope)
	}

	// tamperedN valid records spread over the members, each with one bit
	// flipped at a random place of its envelope.
	rng := rand.New(rand.NewPCG(seed, seed^0x5a5a))
	// Half the members sign in batches: the flipped bit may fall in a
	// batch signature, an index or an inclusion proof.
	per := tamperedN / len(members)
	for i, k := range members {
		genuine := chain(t, k, ch, 0, cid.Undef, per, "a genuine record, soon to be tampered with")
		if i%2 == 1 {
			genuine = chainBatch(t, k, ch, 0, cid.Undef, per, 64, "a genuine record of a batch, soon to be tampered with")
		}
		for _, s := range genuine {
			env := slices.Clone(s.Envelope)
			bit := rng.IntN(len(env) * 8)
			env[bit/8] ^= 1 << (bit % 8)
			h.tampered = append(h.tampered, env)
			h.bases = append(h.bases, s.CID)
		}
	}
	// The premise: not one of them opens.
	for i, env := range h.all() {
		if s, err := protocol.Open(env); err == nil && s.ChannelOf() == ch && a.gov.check(s) == nil {
			t.Fatalf("hostile envelope %d is acceptable", i)
		}
	}
	return h
}

// TestTamperedRecordsRejected: a member of a channel turns malicious. It
// sends the honest node records signed by a non-member, records naming
// another author, a record of another channel, and 10,000 valid envelopes
// each with one bit flipped: through the pubsub validator, over gossipsub,
// and as a sync answer. None is stored; each that is looked at is rejected
// with a reason in the metrics; gossipsub graylists the malicious peer and
// the node's own penalty for it rises with every bad record sent by sync.
func TestTamperedRecordsRejected(t *testing.T) {
	a := startNode(t, "Honest")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "tamper", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.CreateChannel(ctx, "other", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mal, malID := newKey(t)
	addMember(t, a, ch, malID)
	addMember(t, a, other, malID)
	seed := uint64(time.Now().UnixNano())
	t.Logf("bit-flip seed %d", seed)
	hs := makeHostile(t, a, ch, other, mal, seed)
	all := hs.all()
	stored := func() int {
		k := 0
		for _, c := range hs.bases {
			if has(a, c) {
				k++
			}
		}
		for _, env := range all {
			if c, err := protocol.EnvelopeCID(env); err == nil && has(a, c) {
				k++
			}
		}
		return k
	}
	count0 := a.store.Count()
	const rejected = "sangsaeng_records_rejected_total"

	// 1. Every envelope through the channel's pubsub validator, as if the
	// malicious member had forwarded it: each is refused, and counted
	// under the rule it broke.
	t.Run("validator", func(t *testing.T) {
		before := metricValues(t, a, rejected)
		v := a.validator(ch)
		topic := Topic(ch)
		for i, env := range all {
			m := &pubsub.Message{Message: &pb.Message{Data: env, Topic: &topic}, ReceivedFrom: malID}
			if res := v(ctx, malID, m); res == pubsub.ValidationAccept {
				t.Fatalf("envelope %d accepted", i)
			}
		}
		got := diff(before, metricValues(t, a, rejected))
		t.Logf("validator: %d of %d rejected, by reason %v", int(sum(got)), len(all), got)
		if int(sum(got)) != len(all) {
			t.Fatalf("%v rejections counted for %d envelopes", sum(got), len(all))
		}
		if got["other"] > 0 {
			t.Fatalf("%v rejections without a named reason", got["other"])
		}
		if n := stored(); n != 0 || a.store.Count() != count0 {
			t.Fatalf("%d hostile records stored", n)
		}
	})

	// 1b. The same in bundles of 50, as a publisher's gossiper sends a
	// batch: no bundle accepted, each envelope counted once.
	t.Run("validator, bundles", func(t *testing.T) {
		before := metricValues(t, a, rejected)
		for i := 0; i < len(all); i += 50 {
			b := protocol.EncodeBundle(all[i:min(i+50, len(all))])
			if res := deliver(ctx, a, ch, malID, b); res != pubsub.ValidationReject {
				t.Fatalf("bundle at %d: %v, want a rejection", i, res)
			}
		}
		got := diff(before, metricValues(t, a, rejected))
		if int(sum(got)) != len(all) || got["other"] > 0 {
			t.Fatalf("%v rejections counted for %d envelopes in bundles: %v", sum(got), len(all), got)
		}
		if n := stored(); n != 0 || a.store.Count() != count0 {
			t.Fatalf("%d hostile records stored", n)
		}
	})

	// 2. Over gossipsub, from a bare host with the malicious member's key.
	t.Run("gossipsub", func(t *testing.T) {
		before := metricValues(t, a, rejected)
		h := bareHost(t, mal)
		sp := &spy{topic: Topic(ch)}
		ps := barePubSub(t, h, true, sp)
		tp, err := ps.Join(Topic(ch))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Connect(ctx, addrInfo(a)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the malicious member to see the node in the topic", 10*time.Second, func() bool {
			return slices.Contains(tp.ListPeers(), a.ID())
		})
		start := time.Now()
		// The bit flips first, so that they are what the node catches.
		for _, env := range append(slices.Clone(hs.tampered), hs.forged...) {
			if err := tp.Publish(ctx, env); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for sp.sent.Load() < int64(len(all)) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d envelopes on the wire; %d RPCs dropped by the sender", sp.sent.Load(), len(all), sp.dropped.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
		waitFor(t, "the node to graylist the malicious member", 10*time.Second, func() bool {
			return a.PeerScore(malID) < scoreThresholds.GraylistThreshold
		})
		// Let whatever is still queued be validated.
		last := -1.0
		waitFor(t, "the node to finish validating", 20*time.Second, func() bool {
			cur := sum(metricValues(t, a, rejected))
			done := cur == last
			last = cur
			time.Sleep(200 * time.Millisecond)
			return done
		})
		got := diff(before, metricValues(t, a, rejected))
		t.Logf("gossipsub: %d sent in %s; %d validated and rejected %v; the rest dropped unread once the peer was graylisted; score %.0f (graylist below %.0f)",
			sp.sent.Load(), time.Since(start).Round(time.Millisecond), int(sum(got)), got, a.PeerScore(malID), scoreThresholds.GraylistThreshold)
		if got["other"] > 0 {
			t.Fatalf("%v rejections without a named reason", got["other"])
		}
		if n := stored(); n != 0 || a.store.Count() != count0 {
			t.Fatalf("%d hostile records stored", n)
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the node to notice the peer is gone", 10*time.Second, func() bool { return !a.connected(malID) })
	})

	// 3. As a sync answer: no graylist stands in the way here, so every
	// envelope reaches the checks.
	t.Run("sync", func(t *testing.T) {
		before := metricValues(t, a, rejected)
		penalty0 := a.penalty.get(malID)
		h := bareHost(t, mal)
		served := serveSync(h, ch, protocol.Heads{malID: tamperedN}, func() [][]byte { return all })
		if err := a.host.Connect(ctx, peer.AddrInfo{ID: malID, Addrs: h.Addrs()}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := a.syncWith(ctx, malID, ch)
		if err == nil {
			t.Fatal("a sync answer of hostile records raised no error")
		}
		t.Logf("sync error: %v", err)
		// Connecting made the node sync with the peer on its own too:
		// every answer counts.
		waitFor(t, "every answer to be checked", 20*time.Second, func() bool {
			return int(sum(diff(before, metricValues(t, a, rejected)))) == int(served.Load())*len(all)
		})
		if served.Load() == 0 {
			t.Fatal("the node never got the answer")
		}
		got := diff(before, metricValues(t, a, rejected))
		pen := a.penalty.get(malID) - penalty0
		t.Logf("sync: %d answers of %d envelopes, %d rejected in %s, by reason %v; penalty of the sender +%.0f",
			served.Load(), len(all), int(sum(got)), time.Since(start).Round(time.Millisecond), got, pen)
		if got["other"] > 0 {
			t.Fatalf("%v rejections without a named reason", got["other"])
		}
		if pen < 0.9*float64(len(all)) {
			t.Fatalf("the sender's penalty rose by %.0f for %d bad records", pen, len(all))
		}
		if n := stored(); n != 0 || a.store.Count() != count0 {
			t.Fatalf("%d hostile records stored", n)
		}
		if a.appScore(malID) >= 0 {
			t.Fatal("the penalty does not reach the sender's gossipsub score")
		}
	})
	t.Logf("tampered records stored: 0 of %d (plus 0 of %d forged)", len(hs.tampered), len(hs.forged))
}

// flipSignature returns env with one bit of its signature (field 5, in
// either envelope form) flipped: the payload, and so every hash link to
// it, stays as it was.
func flipSignature(t testing.TB, env []byte) []byte {
	t.Helper()
	out := slices.Clone(env)
	for off := 0; off < len(out); {
		num, typ, n := protowire.ConsumeTag(out[off:])
		if n < 0 {
			t.Fatal("not an envelope")
		}
		m := protowire.ConsumeFieldValue(num, typ, out[off+n:])
		if num == 5 {
			out[off+m] ^= 0x10 // a byte near the end of the value
			return out
		}
		off += n + m
	}
	t.Fatal("no signature field")
	return nil
}

// TestForgedMiddleSignature: in a run of a member's batch-signed records
// whose hash links all hold, the middle record's signature is broken (or
// is a signature by another key). However it comes, in a gossip bundle
// with its genuine batch or in a sync answer, it is refused while the
// records around it are kept; what the node stores always opens, and the
// genuine record closes the gap.
func TestForgedMiddleSignature(t *testing.T) {
	a := startNode(t, "Honest")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "middle", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mk, mid := newKey(t)
	addMember(t, a, ch, mid)
	outsider, _ := newKey(t)
	genuine := chainBatch(t, mk, ch, 0, cid.Undef, 100, 50, "a record in a run")
	head := func() uint64 {
		h, err := a.store.Head(ch, mid)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const rejected = "sangsaeng_records_rejected_total"

	// Gossip: the first batch as one bundle, its 25th record's signature
	// broken. The 24 before it and the 25 after it verify by the batch's
	// one signature; the broken one does not pass on the strength of it.
	first := make([][]byte, 50)
	for i := range first {
		first[i] = genuine[i].Envelope
	}
	first[24] = flipSignature(t, first[24])
	before := metricValues(t, a, rejected)
	if res := deliver(ctx, a, ch, mid, protocol.EncodeBundle(first)); res != pubsub.ValidationReject {
		t.Fatalf("a bundle with a forged signature: %v, want a rejection", res)
	}
	if got := diff(before, metricValues(t, a, rejected)); got["bad_signature"] != 1 || sum(got) != 1 {
		t.Fatalf("rejections %v, want one bad_signature", got)
	}
	if has(a, genuine[24].CID) || head() != 24 || !has(a, genuine[25].CID) || !has(a, genuine[49].CID) {
		t.Fatalf("after the bundle: head %d, the forged record held %v", head(), has(a, genuine[24].CID))
	}

	// Sync: the second batch, its 25th record signed by another key.
	second := make([][]byte, 50)
	for i := range second {
		second[i] = genuine[50+i].Envelope
	}
	second[24] = forgeAs(t, genuine[74].Record, outsider)
	h := bareHost(t, mk)
	serveSync(h, ch, protocol.Heads{mid: 100}, func() [][]byte { return second })
	before = metricValues(t, a, rejected)
	// Connecting makes the node sync with the peer on its own.
	if err := a.host.Connect(ctx, peer.AddrInfo{ID: mid, Addrs: h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sync answer to be checked", 10*time.Second, func() bool {
		// Refused as a key not in force, or, while the chain has the
		// gap left by the first forgery, as one that may follow a key
		// change not yet held: stored either way it is not.
		got := diff(before, metricValues(t, a, rejected))
		return got["key_not_in_force"]+got["pending_change"] >= 1 && has(a, genuine[99].CID)
	})
	if has(a, genuine[74].CID) || !has(a, genuine[75].CID) || !has(a, genuine[50].CID) {
		t.Fatalf("after the sync: the forged record held %v", has(a, genuine[74].CID))
	}

	// The genuine records close both gaps, and everything stored opens.
	for _, i := range []int{24, 74} {
		if res := deliver(ctx, a, ch, mid, genuine[i].Envelope); res != pubsub.ValidationAccept {
			t.Fatalf("the genuine record %d: %v", i, res)
		}
	}
	if head() != 100 {
		t.Fatalf("head %d after the genuine records, want 100", head())
	}
	for _, g := range genuine {
		s, err := a.store.Get(g.CID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := protocol.OpenDelegated(s.Envelope); err != nil {
			t.Fatalf("seq %d is stored with an envelope that does not open: %v", g.Record.Seq, err)
		}
	}
}
