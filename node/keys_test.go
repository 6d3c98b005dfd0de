package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// keyTrio: A, B and C in channel X, connected.
func keyTrio(t *testing.T) (a, b, c *Node, x cid.Cid) {
	t.Helper()
	a, b, c = startNode(t, "A"), startNode(t, "B"), startNode(t, "C")
	x = link(t, a, b, "X")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := a.Invite(ctx, x, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	connectAll(t, []*Node{a, b, c})
	return a, b, c, x
}

// sealWithKey signs a record of n's chain in ch at its next seq with key,
// as a holder of that key could, without n's publisher.
func sealWithKey(t *testing.T, n *Node, ch cid.Cid, key crypto.PrivKey, text string) *protocol.Signed {
	t.Helper()
	seq, prev, err := n.ownHead(ch)
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.SealWith(&protocol.Record{Channel: ch, Author: n.self, Seq: seq + 1, Prev: prev, Time: time.Now().UnixMilli(), Kind: "note", Body: map[string]any{"text": text}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeyRotation: A rotates its key; B and C accept A's records signed
// with the new key and refuse one signed with the old key after the
// rotation point; A's records from before still verify offline; A signs
// with the new key after a restart; a copy of A's home from before the
// rotation cannot publish and says why.
func TestKeyRotation(t *testing.T) {
	a, b, c, x := keyTrio(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := publishNotes(t, a, x, 2, "before")
	waitFor(t, "A's records at B and C", 20*time.Second, func() bool { return has(b, before.CID) && has(c, before.CID) })

	// The backup: A's home as it was before the rotation.
	cfg := a.cfg
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	copyDir(t, cfg.Home, backup)
	a = reopen(t, cfg)
	connectAll(t, []*Node{a, b, c})

	oldKey := a.key
	newID, err := a.RotateKey(ctx, "server replaced")
	if err != nil {
		t.Fatal(err)
	}
	if a.Signer() != newID || newID == a.ID() {
		t.Fatalf("A signs with %s after rotating to %s", a.Signer(), newID)
	}
	after := publishNotes(t, a, x, 1, "after")
	if after.Signer != newID {
		t.Fatalf("A's new record is signed by %s", after.Signer)
	}
	for _, n := range []*Node{b, c} {
		waitFor(t, n.cfg.Name+" to hold A's record signed with the new key", 20*time.Second, func() bool { return has(n, after.CID) })
	}
	// The old key, after the rotation point, counts nowhere.
	forged := sealWithKey(t, a, x, oldKey, "signed with the old key")
	for _, n := range []*Node{b, c} {
		if _, err := n.ingest(x, forged.Envelope, a.ID(), opGossip); !errors.Is(err, protocol.ErrKeyNotInForce) {
			t.Fatalf("%s took a record signed with the rotated key: %v", n.cfg.Name, err)
		}
	}
	// Before it, A's records still verify, offline, and say the key was
	// rotated later.
	if _, err := protocol.Open(before.Envelope); err != nil {
		t.Fatalf("a record from before the rotation: %v", err)
	}
	if v := b.verify(before.Envelope); len(v.Errors) > 0 || v.Signer != a.ID().String() || !strings.Contains(v.Key, "rotated later") {
		t.Fatalf("B's verify of a record from before: %+v", v)
	}
	if v := b.verify(forged.Envelope); len(v.Errors) == 0 {
		t.Fatalf("B's verify passes a record of the old key after the rotation: %+v", v)
	}
	st, ok := b.gov.keyLog(a.ID()).Key(a.ID())
	if !ok || st.Left != protocol.KeyRotate || st.By != newID {
		t.Fatalf("B's key log of A: %+v", st)
	}
	if err := b.gov.keyLog(a.ID()).Check(a.ID(), x, before.Record.Seq); err != nil {
		t.Fatal(err)
	}
	// The old key is kept aside, the new one signs after a restart.
	if _, err := os.Stat(filepath.Join(cfg.Home, IdentityFile)); err != nil {
		t.Fatal(err)
	}
	a = restart(t, a)
	connectAll(t, []*Node{a, b, c})
	if a.Signer() != newID {
		t.Fatalf("after a restart A signs with %s", a.Signer())
	}
	again := publishNotes(t, a, x, 1, "after the restart")
	waitFor(t, "A's record after its restart at B", 20*time.Second, func() bool { return has(b, again.CID) })

	// The backup, started in place of A, learns of the rotation from its
	// partners and refuses to publish with its old key.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	bcfg, err := LoadConfig(backup)
	if err != nil {
		t.Fatal(err)
	}
	old := reopen(t, bcfg)
	connectAll(t, []*Node{old, b, c})
	var perr error
	for try := time.Now(); time.Since(try) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		_, perr = old.Publish(ctx, x, "note", map[string]any{"text": "from the backup"}, nil)
		if perr == nil || !strings.Contains(perr.Error(), "not confirmed") {
			break
		}
	}
	if !errors.Is(perr, protocol.ErrKeyNotInForce) || !strings.Contains(perr.Error(), "old key") {
		t.Fatalf("the backup with the old key published: %v", perr)
	}
}

// TestKeyRevocation: A adds a device key, and the device signs a record of
// A's; A revokes the key; every node refuses the device's later records,
// C too, which was down during the revocation and learns of it by sync;
// the device's record from before still verifies.
func TestKeyRevocation(t *testing.T) {
	a, b, c, x := keyTrio(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dev, path, err := a.AddDeviceKey(ctx, "backup server")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	devKey, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key file %s: %v %v", path, fi.Mode(), err)
	}
	waitFor(t, "B and C to learn of the device key", 20*time.Second, func() bool {
		_, atB := b.gov.keyLog(a.ID()).Key(dev)
		_, atC := c.gov.keyLog(a.ID()).Key(dev)
		return atB && atC
	})
	// The device signs A's next record.
	byDevice := sealWithKey(t, a, x, devKey, "from the backup server")
	for _, n := range []*Node{a, b, c} {
		if _, err := n.ingest(x, byDevice.Envelope, a.ID(), opGossip); err != nil {
			t.Fatalf("%s refused the device's record: %v", n.cfg.Name, err)
		}
	}
	// Revoking it from before that record would refuse A's own record.
	if err := a.RevokeKey(ctx, dev, byDevice.Record.Seq, cid.Undef, ""); err == nil || !strings.Contains(err.Error(), "revoke from seq") {
		t.Fatalf("a revocation over A's own record: %v", err)
	}
	cfgC := c.cfg
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeKey(ctx, dev, 0, cid.Undef, "server stolen"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to learn of the revocation", 20*time.Second, func() bool {
		st, _ := b.gov.keyLog(a.ID()).Key(dev)
		return st.Left == protocol.KeyRevoke
	})
	later := sealWithKey(t, a, x, devKey, "the thief's")
	if _, err := b.ingest(x, later.Envelope, a.ID(), opGossip); !errors.Is(err, protocol.ErrKeyNotInForce) {
		t.Fatalf("B took a record of the revoked key: %v", err)
	}
	// C was down: it learns of the revocation by sync.
	c = reopen(t, cfgC)
	connectAll(t, []*Node{a, b, c})
	waitFor(t, "C to learn of the revocation by sync", 30*time.Second, func() bool {
		st, _ := c.gov.keyLog(a.ID()).Key(dev)
		return st.Left == protocol.KeyRevoke
	})
	if _, err := c.ingest(x, later.Envelope, a.ID(), opGossip); !errors.Is(err, protocol.ErrKeyNotInForce) {
		t.Fatalf("C took a record of the revoked key: %v", err)
	}
	// The device's record from before the revocation still verifies.
	s, err := protocol.OpenDelegated(byDevice.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{b, c} {
		if err := n.gov.keyLog(a.ID()).Check(s.Signer, x, s.Record.Seq); err != nil {
			t.Fatalf("%s: the device's record from before: %v", n.cfg.Name, err)
		}
		if !has(n, byDevice.CID) {
			t.Fatalf("%s lost the device's record from before", n.cfg.Name)
		}
	}
}

// TestRotationWhilePartnersDown: A rotates while its only partner is down;
// the change is durable at A (its key log survives a restart) and reaches
// B when it is back. A restarted A whose head no partner has confirmed
// yet refuses to rotate and changes nothing.
func TestRotationWhilePartnersDown(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	x := link(t, a, b, "X")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publishNotes(t, a, x, 1, "before")
	cfgB := b.cfg
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	newID, err := a.RotateKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	a = restart(t, a)
	if a.Signer() != newID || len(a.KeyLog().Entries) != 1 {
		t.Fatalf("after a restart A signs with %s, its key log has %d entries", a.Signer(), len(a.KeyLog().Entries))
	}
	// Restarted with B still down: A's head is unconfirmed, so a second
	// rotation is refused before anything changes.
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if _, err := a.RotateKey(short, ""); err == nil {
		t.Fatal("A rotated with its own head unconfirmed")
	}
	if a.Signer() != newID || len(a.KeyLog().Entries) != 1 {
		t.Fatalf("a refused rotation changed the key: %s, %d entries", a.Signer(), len(a.KeyLog().Entries))
	}
	b = reopen(t, cfgB)
	connectAll(t, []*Node{a, b})
	after := publishNotesRetry(t, a, x, "after")
	waitFor(t, "B to take A's record signed with the new key", 30*time.Second, func() bool { return has(b, after.CID) })
	if st, _ := b.gov.keyLog(a.ID()).Key(a.ID()); st.Left != protocol.KeyRotate {
		t.Fatalf("B's key log of A: %+v", st)
	}
}

// publishNotesRetry publishes one note, retrying while the node's own head
// is not confirmed yet (after a restart).
func publishNotesRetry(t *testing.T, n *Node, ch cid.Cid, text string) *protocol.Signed {
	t.Helper()
	var err error
	for try := time.Now(); time.Since(try) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		var s *protocol.Signed
		if s, err = n.Publish(context.Background(), ch, "note", map[string]any{"text": text}, nil); err == nil {
			return s
		}
		if !strings.Contains(err.Error(), "not confirmed") {
			break
		}
	}
	t.Fatal(err)
	return nil
}

// TestKeyLogChecksChangeNothing: a record "by A" signed with a stranger's
// key, where B holds A's chain up to it, is refused outright, not left
// pending; a keys record that B only verifies (or refuses) does not become
// A's key log at B.
func TestKeyLogChecksChangeNothing(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	x := link(t, a, b, "X")
	last := publishNotes(t, a, x, 2, "A's")
	waitFor(t, "A's records at B", 20*time.Second, func() bool { return has(b, last.CID) })
	stranger, _ := newKey(t)
	forged := sealWithKey(t, a, x, stranger, "by A, says the stranger")
	if _, err := b.ingest(x, forged.Envelope, a.ID(), opGossip); !errors.Is(err, protocol.ErrKeyNotInForce) || errors.Is(err, ErrPendingChange) {
		t.Fatalf("a forged author: %v", err)
	}
	// One who holds A's first key signs a key log of its own choosing and
	// a keys record carrying it; B is only asked to verify it.
	_, thief := newKey(t)
	log := protocol.NewKeyLog(a.ID())
	entry, err := protocol.SealWith(log.Next(protocol.KeyEvent{Op: protocol.KeyAdd, Key: thief}, 1), a.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Append(entry); err != nil {
		t.Fatal(err)
	}
	seq, prev, err := a.ownHead(x)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := protocol.SealWith(&protocol.Record{Channel: x, Author: a.ID(), Seq: seq + 1, Prev: prev, Time: 1, Kind: protocol.KindKeys, Body: log.KeysBody()}, a.key)
	if err != nil {
		t.Fatal(err)
	}
	b.verify(keys.Envelope)
	if n := len(b.gov.keyLog(a.ID()).Entries); n != 0 {
		t.Fatalf("verifying a keys record gave B a key log of A of %d entries", n)
	}
}
