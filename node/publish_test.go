package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestOwnRecordPastGapNotSignedOver: the publisher remembers the last
// record it stored, but a record of its own that comes back from a
// partner past a gap (a home restored from a backup) is above that: the
// next publish signs after it, never a seq the company already used.
func TestOwnRecordPastGapNotSignedOver(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "gap", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	last := publishNotes(t, a, ch, 2, "published")
	// A record of A's, seq last+5, as a partner would hold it.
	far, err := protocol.Seal(&protocol.Record{Channel: ch, Author: a.self, Seq: last.Record.Seq + 5,
		Prev: protocol.Sum([]byte("a record this home lost")), Time: 1, Kind: "note",
		Body: map[string]any{"text": "signed before the backup was restored"}}, a.key)
	if err != nil {
		t.Fatal(err)
	}
	_, partner := newKey(t)
	addMember(t, a, ch, partner)
	if res := deliver(ctx, a, ch, partner, far.Envelope); res != pubsub.ValidationAccept {
		t.Fatalf("A's own record from a partner: %v", res)
	}
	next, err := a.Publish(ctx, ch, "note", map[string]any{"text": "after the restore"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Record.Seq != far.Record.Seq+1 || next.Record.Prev != far.CID {
		t.Fatalf("signed seq %d on top of %s, want seq %d on top of the record from the partner", next.Record.Seq, next.Record.Prev, far.Record.Seq+1)
	}
}

// TestQuotaChargesSignatures: a record signed alone costs its author four
// tokens of the quota; a record of a batch one, and three more when it is
// the one whose batch signature the node checks, so that sending a record
// from each of many batches costs what single records do. A bundle that
// holds a record over the quota is stored in part and not forwarded. The
// quota's clock stands still: no refill during the test.
func TestQuotaChargesSignatures(t *testing.T) {
	a := startNodeWith(t, "A", slog.LevelInfo, func(c *Config) { c.AuthorQuota = 10 }) // bursts of 20 tokens
	t0 := time.Now()
	a.quota.now = func() time.Time { return t0 }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "quota", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	send := func(from peer.ID, data []byte) pubsub.ValidationResult { return deliver(ctx, a, ch, from, data) }
	member := func() (crypto.PrivKey, peer.ID) {
		k, id := newKey(t)
		addMember(t, a, ch, id)
		return k, id
	}
	held := func(id peer.ID) int {
		recs, err := a.store.ByAuthor(ch, id, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	// Records signed one by one: 20 tokens take 5.
	k1, id1 := member()
	for _, s := range chain(t, k1, ch, 0, cid.Undef, 10, "alone") {
		send(id1, s.Envelope)
	}
	if got := held(id1); got != 5 {
		t.Fatalf("%d records signed alone stored of a quota of 20 tokens, want 5", got)
	}
	// One record from each of 10 batches of 2: each is checked, so each
	// costs 4 as well.
	k2, id2 := member()
	recs := chainBatch(t, k2, ch, 0, cid.Undef, 20, 2, "one of two")
	for i := 0; i < len(recs); i += 2 {
		send(id2, recs[i].Envelope)
	}
	if got := held(id2); got != 5 {
		t.Fatalf("%d records, each of a batch of its own, stored of a quota of 20 tokens, want 5", got)
	}
	// A batch of 30 as one bundle: the first record pays the check (4),
	// the next 16 one each; the bundle, which held records over the
	// quota, is not forwarded.
	k3, id3 := member()
	var envs [][]byte
	for _, s := range chainBatch(t, k3, ch, 0, cid.Undef, 30, 30, "batched") {
		envs = append(envs, s.Envelope)
	}
	if res := send(id3, protocol.EncodeBundle(envs)); res != pubsub.ValidationIgnore {
		t.Fatalf("a bundle with records over the quota: %v, want ignored", res)
	}
	if got := held(id3); got != 17 {
		t.Fatalf("%d batched records stored of a quota of 20 tokens, want 17", got)
	}
}

// TestBundlePenaltyPerRecord: a rejected bundle costs its sender, besides
// gossipsub's one invalid delivery, a penalty for each record in it that
// is bad by itself, as the same records one by one over sync would.
func TestBundlePenaltyPerRecord(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "penalty", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mk, mid := newKey(t)
	addMember(t, a, ch, mid)
	var envs [][]byte
	for _, s := range chainBatch(t, mk, ch, 0, cid.Undef, 10, 10, "forged") {
		envs = append(envs, flipSignature(t, s.Envelope))
	}
	before := a.penalty.get(mid)
	if res := deliver(ctx, a, ch, mid, protocol.EncodeBundle(envs)); res != pubsub.ValidationReject {
		t.Fatalf("a bundle of forged records: %v", res)
	}
	if got := a.penalty.get(mid) - before; got < 8.9 || got > 9.1 {
		t.Fatalf("penalty +%.2f for a bundle of 10 forged records, want +9 (and gossipsub's one)", got)
	}
}

// TestBundleLinkMismatchOnce: a record of a bundle whose link breaks its
// kind's rules, pointing at another record of the same bundle, is counted
// once, not once from each end.
func TestBundleLinkMismatchOnce(t *testing.T) {
	a := startNode(t, "A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "links", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	mk, mid := newKey(t)
	addMember(t, a, ch, mid)
	note := &protocol.Record{Channel: ch, Author: mid, Seq: 1, Time: 1, Kind: "note", Body: map[string]any{"text": "not an order"}}
	b, err := note.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resp := &protocol.Record{Channel: ch, Author: mid, Seq: 2, Prev: protocol.Sum(b), Time: 2, Kind: "order-response",
		Links: []protocol.Link{{Rel: "responds-to", CID: protocol.Sum(b)}}, // an order-response responds to an order
		Body: map[string]any{
			"docId": "RSP-1", "docVersion": int64(1), "issuedAt": "2026-11-22T10:30:00+09:00",
			"orderRef":     map[string]any{"docId": "PO-1", "docVersion": int64(1)},
			"seller":       map[string]any{"scheme": "vendor", "id": "V-1"},
			"buyer":        map[string]any{"scheme": "vendor", "id": "B-1"},
			"responseCode": "accepted",
		}}
	batch, err := protocol.SealBatch([]*protocol.Record{note, resp}, mk)
	if err != nil {
		t.Fatal(err)
	}
	const mismatches = "sangsaeng_link_mismatches_total"
	before := metric(t, a, mismatches)
	if res := deliver(ctx, a, ch, mid, protocol.EncodeBundle([][]byte{batch[0].Envelope, batch[1].Envelope})); res != pubsub.ValidationAccept {
		t.Fatalf("the bundle: %v", res)
	}
	if got := metric(t, a, mismatches) - before; got != 1 {
		t.Fatalf("%v link mismatches counted for one bad link, want 1", got)
	}
}
