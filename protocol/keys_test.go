package protocol

import (
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// keyEvent appends ev to l, signed by key.
func keyEvent(t *testing.T, l *KeyLog, key crypto.PrivKey, ev KeyEvent) (*Signed, error) {
	t.Helper()
	s, err := SealWith(l.Next(ev, 1795833000000), key)
	if err != nil {
		t.Fatal(err)
	}
	// What a reader gets: the envelope, opened.
	o, err := OpenDelegated(s.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	return o, l.Append(o)
}

func TestKeyLogRotateAddRevoke(t *testing.T) {
	k1, a := testKey(t, 1)
	k2, id2 := testKey(t, 2)
	_, dev := testKey(t, 3)
	other := Sum([]byte("another channel"))
	l := NewKeyLog(a)
	if err := l.Check(a, testChannel, 1000); err != nil {
		t.Fatalf("the first key signs anything before any change: %v", err)
	}
	if err := l.Check(id2, testChannel, 1); !errors.Is(err, ErrKeyNotInForce) {
		t.Fatalf("a key the log does not name: %v", err)
	}
	// Rotate k1 → k2 after seq 41 in testChannel.
	if _, err := keyEvent(t, l, k1, KeyEvent{Op: KeyRotate, Key: id2, From: map[cid.Cid]uint64{testChannel: 42}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  peer.ID
		ch   cid.Cid
		seq  uint64
		okay bool
	}{
		{a, testChannel, 41, true},   // before the rotation point
		{a, testChannel, 42, false},  // after it
		{a, other, 1, false},         // a channel the rotation did not list
		{id2, testChannel, 42, true}, // the new key
		{id2, other, 1, true},
	} {
		err := l.Check(c.key, c.ch, c.seq)
		if (err == nil) != c.okay {
			t.Errorf("Check(%s, seq %d) = %v, want ok=%v", c.key, c.seq, err, c.okay)
		}
	}
	// k1 may no longer sign the log.
	if _, err := keyEvent(t, l, k1, KeyEvent{Op: KeyAdd, Key: dev}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("a retired key signs an entry: %v", err)
	}
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyAdd, Key: dev}); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(dev, other, 7); err != nil {
		t.Fatal(err)
	}
	// Revoke the device from seq 5 in other.
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyRevoke, Key: dev, From: map[cid.Cid]uint64{other: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(dev, other, 4); err != nil {
		t.Fatalf("before the revocation point: %v", err)
	}
	if err := l.Check(dev, other, 5); !errors.Is(err, ErrKeyNotInForce) {
		t.Fatalf("from the revocation point: %v", err)
	}
	// A device key cannot revoke the key that added it.
	kd, dev2 := testKey(t, 4)
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyAdd, Key: dev2}); err != nil {
		t.Fatal(err)
	}
	if _, err := keyEvent(t, l, kd, KeyEvent{Op: KeyRevoke, Key: id2}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("a device key revoked the main key: %v", err)
	}
	if _, err := keyEvent(t, l, kd, KeyEvent{Op: KeyRevoke, Key: a}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("a device key undid what the retired main key signed: %v", err)
	}
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyRevoke, Key: dev2}); err != nil {
		t.Fatal(err)
	}
	// The last key in force cannot be revoked.
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyRevoke, Key: id2}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("revoking the last key: %v", err)
	}
	// The log travels in a keys body and reads back the same.
	back, err := KeyLogOf(a, l.KeysBody())
	if err != nil {
		t.Fatal(err)
	}
	if !back.Extends(l) || !l.Extends(back) || len(back.InForce()) != 1 || back.InForce()[0] != id2 {
		t.Fatalf("read back: %d entries, in force %v", len(back.Entries), back.InForce())
	}
	// Revoking a retired key only narrows what it signed.
	if _, err := keyEvent(t, l, k2, KeyEvent{Op: KeyRevoke, Key: a, From: map[cid.Cid]uint64{testChannel: 50, other: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(a, testChannel, 45); !errors.Is(err, ErrKeyNotInForce) {
		t.Fatalf("a revocation widened a retired key's reach: %v", err)
	}
	if err := l.Check(a, other, 1); !errors.Is(err, ErrKeyNotInForce) {
		t.Fatalf("a revocation gave a retired key a channel: %v", err)
	}
	if err := l.Check(a, testChannel, 41); err != nil {
		t.Fatalf("a record from before still verifies: %v", err)
	}
}

func TestKeyLogRefusesBadEntries(t *testing.T) {
	k1, a := testKey(t, 1)
	_, id2 := testKey(t, 2)
	k9, _ := testKey(t, 9)
	l := NewKeyLog(a)
	if _, err := keyEvent(t, l, k9, KeyEvent{Op: KeyAdd, Key: id2}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("an entry signed by a stranger: %v", err)
	}
	if _, err := keyEvent(t, l, k1, KeyEvent{Op: KeyRotate, Key: a}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("a rotation to the key itself: %v", err)
	}
	if _, err := keyEvent(t, l, k1, KeyEvent{Op: KeyRevoke, Key: id2}); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("revoking a key not in the log: %v", err)
	}
	// An entry that skips one, or names the wrong prev.
	r := l.Next(KeyEvent{Op: KeyAdd, Key: id2}, 1)
	r.Seq, r.Prev = 2, Sum([]byte("no such entry"))
	s, err := SealWith(r, k1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(s); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("an entry out of order: %v", err)
	}
	// A key-event in a channel's chain is not an entry of the key log.
	r = l.Next(KeyEvent{Op: KeyAdd, Key: id2}, 1)
	r.Channel = testChannel
	if s, err = SealWith(r, k1); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(s); !errors.Is(err, ErrKeyLog) {
		t.Fatalf("an entry in a channel: %v", err)
	}
	if len(l.Entries) != 0 {
		t.Fatalf("refused entries changed the log: %d entries", len(l.Entries))
	}
}

func TestOpenDelegated(t *testing.T) {
	_, a := testKey(t, 1)
	k2, id2 := testKey(t, 2)
	r := testRecord(t, 1, 1, cid.Undef)
	s, err := SealWith(r, k2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Envelope); !errors.Is(err, ErrAuthorMismatch) {
		t.Fatalf("Open of a record signed by another key: %v", err)
	}
	o, err := OpenDelegated(s.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if o.Signer != id2 || o.Record.Author != a {
		t.Fatalf("signer %s, author %s", o.Signer, o.Record.Author)
	}
	if got, err := SignerOf(s.Envelope); err != nil || got != id2 {
		t.Fatalf("SignerOf: %s, %v", got, err)
	}
	bad := append([]byte(nil), s.Envelope...)
	bad[len(bad)-1] ^= 1
	if _, err := OpenDelegated(bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a broken signature: %v", err)
	}
}

// FuzzKeyLog: a keys body from outside never panics, and a log it yields
// reads back the same.
func FuzzKeyLog(f *testing.F) {
	k1 := func() crypto.PrivKey { k, _ := testKey(f, 1); return k }()
	_, a := testKey(f, 1)
	_, id2 := testKey(f, 2)
	l := NewKeyLog(a)
	s, err := SealWith(l.Next(KeyEvent{Op: KeyRotate, Key: id2, From: map[cid.Cid]uint64{testChannel: 3}}, 1), k1)
	if err != nil {
		f.Fatal(err)
	}
	if err := l.Append(s); err != nil {
		f.Fatal(err)
	}
	seed, err := EncodeValue(l.KeysBody())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{0xa1, 0x63, 'l', 'o', 'g', 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		body, ok := v.(map[string]any)
		if !ok {
			return
		}
		got, err := KeyLogOf(a, body)
		if err != nil {
			return
		}
		again, err := KeyLogOf(a, got.KeysBody())
		if err != nil || !again.Extends(got) || !got.Extends(again) {
			t.Fatalf("a log does not read back: %v", err)
		}
	})
}

// FuzzHeadsReceipt: a heads-receipt body from outside never panics, and
// one it accepts names every author once with a seq of at least 1.
func FuzzHeadsReceipt(f *testing.F) {
	_, a := testKey(f, 1)
	seed, err := EncodeValue(map[string]any{"heads": []any{map[string]any{"author": a.String(), "seq": int64(3), "cid": testChannel.String()}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		body, ok := v.(map[string]any)
		if !ok {
			return
		}
		got, err := ParseHeadsReceipt(body)
		if err != nil {
			return
		}
		for p, h := range got {
			if h.Seq < 1 || !h.CID.Defined() || p == "" {
				t.Fatalf("accepted %s at %+v", p, h)
			}
		}
	})
}

// FuzzKeyEvent: any key-event body, signed by a key in force, either is
// refused or leaves a log with a key in force that reads back the same;
// the rules of Append, not the signature check, face the input.
func FuzzKeyEvent(f *testing.F) {
	k1 := func() crypto.PrivKey { k, _ := testKey(f, 1); return k }()
	_, a := testKey(f, 1)
	_, id2 := testKey(f, 2)
	for _, ev := range []KeyEvent{
		{Op: KeyRotate, Key: id2, From: map[cid.Cid]uint64{testChannel: 3}},
		{Op: KeyAdd, Key: id2},
		{Op: KeyRevoke, Key: a, From: map[cid.Cid]uint64{testChannel: 1}},
	} {
		b, err := EncodeValue(ev.Body())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			return
		}
		body, ok := v.(map[string]any)
		if !ok {
			return
		}
		l := NewKeyLog(a)
		r := &Record{Channel: KeyLogID(a), Author: a, Seq: 1, Time: 1, Kind: KindKeyEvent, Body: body}
		s, err := SealWith(r, k1)
		if err != nil {
			return // not a body a record can hold
		}
		o, err := OpenDelegated(s.Envelope)
		if err != nil {
			t.Fatalf("a sealed entry does not open: %v", err)
		}
		if l.Append(o) != nil {
			return
		}
		if len(l.InForce()) == 0 {
			t.Fatal("an entry left no key in force")
		}
		back, err := KeyLogOf(a, l.KeysBody())
		if err != nil || !back.Extends(l) || !l.Extends(back) {
			t.Fatalf("the log does not read back: %v", err)
		}
	})
}
