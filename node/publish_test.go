package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
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
	topic := Topic(ch)
	m := &pubsub.Message{Message: &pb.Message{Data: far.Envelope, Topic: &topic}, ReceivedFrom: partner}
	if res := a.validator(ch)(ctx, partner, m); res != pubsub.ValidationAccept {
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
// tokens of the quota, a record sharing its batch's signature one; a
// bundle that holds a record over the quota is stored but not forwarded.
func TestQuotaChargesSignatures(t *testing.T) {
	a := startNodeWith(t, "A", slog.LevelInfo, func(c *Config) { c.AuthorQuota = 10 }) // bursts of 20 tokens
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "quota", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	topic := Topic(ch)
	send := func(from peer.ID, data []byte) pubsub.ValidationResult {
		m := &pubsub.Message{Message: &pb.Message{Data: data, Topic: &topic}, ReceivedFrom: from}
		return a.validator(ch)(ctx, from, m)
	}
	// One author, records signed one by one: 20 tokens take 5.
	k1, id1 := newKey(t)
	addMember(t, a, ch, id1)
	accepted := 0
	for _, s := range chain(t, k1, ch, 0, cid.Undef, 10, "alone") {
		if send(id1, s.Envelope) == pubsub.ValidationAccept {
			accepted++
		}
	}
	if accepted != 5 {
		t.Fatalf("%d records signed alone accepted of a quota of 20 tokens, want 5", accepted)
	}
	// Another, in a batch of 30 sent as one bundle: 20 are stored, and
	// the bundle, which held records over the quota, is not forwarded.
	k2, id2 := newKey(t)
	addMember(t, a, ch, id2)
	var envs [][]byte
	for _, s := range chainBatch(t, k2, ch, 0, cid.Undef, 30, 30, "batched") {
		envs = append(envs, s.Envelope)
	}
	if res := send(id2, protocol.EncodeBundle(envs)); res != pubsub.ValidationIgnore {
		t.Fatalf("a bundle with records over the quota: %v, want ignored", res)
	}
	// Checked on every core, so which 20 is the checkers' order; sync
	// brings the rest.
	if held, err := a.store.ByAuthor(ch, id2, 1, 0); err != nil || len(held) != 20 {
		t.Fatalf("%d batched records stored of a quota of 20 tokens, want 20 (%v)", len(held), err)
	}
}
