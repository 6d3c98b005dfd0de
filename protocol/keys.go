package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// A company is named by its first key, its peer ID, as before it had a key
// log; the keys that sign for it after that are the ones its key log puts
// in force (docs/design.md, "Keys"). The key log is a chain of key-event
// records of its own, in the pseudo-channel KeyLogID(author); a keys record
// carries the whole log into each of the company's channels.
const (
	// KindKeyEvent is one entry of a company's key log.
	KindKeyEvent = "key-event"
	// KindKeys is a channel record that carries its author's key log.
	KindKeys = "keys"
	// KindHeadsReceipt is a member's signed statement of which records of
	// a channel it holds (node/receipts.go).
	KindHeadsReceipt = "heads-receipt"
	// MaxKeyLog is the most entries a key log may hold.
	MaxKeyLog = 64
	// keyLogReserve entries at the end of a key log take no add, so that
	// a log filled with devices can still rotate and revoke.
	keyLogReserve = 8
)

// Key-event operations.
const (
	KeyAdd    = "add"
	KeyRotate = "rotate"
	KeyRevoke = "revoke"
)

var (
	// ErrKeyLog: a key-event that breaks the key log's rules.
	ErrKeyLog = errors.New("key log rule broken")
	// ErrKeyNotInForce: a record signed by a key that its author's key
	// log does not put in force at the record's place in the chain.
	ErrKeyNotInForce = errors.New("signing key not in force")
)

// KeyLogID is the pseudo-channel of author's key log: the Channel of its
// key-event records. It is no channel's genesis, so no channel record can
// be in it.
func KeyLogID(author peer.ID) cid.Cid {
	d := sha256.Sum256(append([]byte("sangsaeng key log\x00"), author...))
	h, _ := mh.Encode(d[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, h)
}

// KeyEvent is a key-event body.
type KeyEvent struct {
	Op  string
	Key peer.ID
	// From: per channel, the first seq of the author's chain that the
	// retired (rotate: the entry's signer) or revoked key no longer signs.
	From map[cid.Cid]uint64
	Note string
}

// Body returns ev as a key-event body.
func (ev KeyEvent) Body() map[string]any {
	b := map[string]any{"op": ev.Op, "key": ev.Key.String()}
	if len(ev.From) > 0 {
		chans := make([]cid.Cid, 0, len(ev.From))
		for c := range ev.From {
			chans = append(chans, c)
		}
		slices.SortFunc(chans, func(a, b cid.Cid) int { return strings.Compare(a.String(), b.String()) })
		from := make([]any, 0, len(chans))
		for _, c := range chans {
			from = append(from, map[string]any{"channel": c.String(), "seq": int64(ev.From[c])})
		}
		b["from"] = from
	}
	if ev.Note != "" {
		b["note"] = ev.Note
	}
	return b
}

// ParseKeyEvent reads a key-event body that passed its schema.
func ParseKeyEvent(body map[string]any) (KeyEvent, error) {
	if err := ValidateBody(KindKeyEvent, body); err != nil {
		return KeyEvent{}, err
	}
	ev := KeyEvent{}
	ev.Op, _ = body["op"].(string)
	ks, _ := body["key"].(string)
	k, err := peer.Decode(ks)
	if err != nil {
		return KeyEvent{}, fmt.Errorf("%w: key %q: %v", ErrKeyLog, ks, err)
	}
	ev.Key = k
	ev.Note, _ = body["note"].(string)
	if from, ok := body["from"].([]any); ok {
		ev.From = map[cid.Cid]uint64{}
		for _, f := range from {
			m, _ := f.(map[string]any)
			cs, _ := m["channel"].(string)
			c, err := cid.Decode(cs)
			if err != nil {
				return KeyEvent{}, fmt.Errorf("%w: channel %q: %v", ErrKeyLog, cs, err)
			}
			seq, _ := m["seq"].(int64)
			if _, dup := ev.From[c]; dup {
				return KeyEvent{}, fmt.Errorf("%w: channel %s is listed twice in from", ErrKeyLog, c)
			}
			ev.From[c] = uint64(seq)
		}
	}
	if ev.Op == KeyAdd && len(ev.From) > 0 {
		return KeyEvent{}, fmt.Errorf("%w: an add takes no from", ErrKeyLog)
	}
	return ev, nil
}

// KeyState is one key of a company and where its key log leaves it.
type KeyState struct {
	Key peer.ID
	// Added is the entry that put the key in force; 0 for the company's
	// first key.
	Added uint64
	// Left is how the key left force: "" while in force, KeyRotate when a
	// rotation retired it, KeyRevoke when it was revoked.
	Left string
	// At is the entry that retired or revoked it; By, for a rotation, the
	// key that replaced it.
	At uint64
	By peer.ID
	// From: once the key left force, per channel the first seq it no
	// longer signs; in a channel not listed, it signs nothing.
	From map[cid.Cid]uint64
	// Rank: 0 for the company's first key and the keys that replace it
	// by rotation; a key added by add ranks one below the key that added
	// it. A key revokes only keys ranked below it (and itself), so a
	// stolen device key cannot revoke the company's main key.
	Rank int
}

// InForce reports whether the key still signs new records.
func (k *KeyState) InForce() bool { return k.Left == "" }

// KeyLog is a company's key log, folded: which key signs for it where.
// The zero number of entries leaves the company's first key, its peer ID,
// in force alone.
type KeyLog struct {
	Author  peer.ID
	Entries []*Signed
	keys    map[peer.ID]*KeyState
	order   []peer.ID
}

// NewKeyLog returns the log of a company that has changed no key.
func NewKeyLog(author peer.ID) *KeyLog {
	l := &KeyLog{Author: author, keys: map[peer.ID]*KeyState{}}
	l.put(&KeyState{Key: author})
	return l
}

func (l *KeyLog) put(k *KeyState) {
	l.keys[k.Key] = k
	l.order = append(l.order, k.Key)
}

// Head is the CID of the newest entry; cid.Undef when there is none.
func (l *KeyLog) Head() cid.Cid {
	if len(l.Entries) == 0 {
		return cid.Undef
	}
	return l.Entries[len(l.Entries)-1].CID
}

// Keys returns every key the log names, the first key first.
func (l *KeyLog) Keys() []KeyState {
	out := make([]KeyState, 0, len(l.order))
	for _, k := range l.order {
		out = append(out, *l.keys[k])
	}
	return out
}

// Key returns the state of key k, or false if the log does not name it.
func (l *KeyLog) Key(k peer.ID) (KeyState, bool) {
	s, ok := l.keys[k]
	if !ok {
		return KeyState{}, false
	}
	return *s, true
}

// InForce returns the keys that sign new records now.
func (l *KeyLog) InForce() []peer.ID {
	var out []peer.ID
	for _, k := range l.order {
		if l.keys[k].InForce() {
			out = append(out, k)
		}
	}
	return out
}

// Check reports whether signer may sign the author's record at seq of
// channel ch.
func (l *KeyLog) Check(signer peer.ID, ch cid.Cid, seq uint64) error {
	k, ok := l.keys[signer]
	if !ok {
		return fmt.Errorf("%w: %s is not a key of %s (its key log has %d entries)", ErrKeyNotInForce, signer, l.Author, len(l.Entries))
	}
	if k.InForce() {
		return nil
	}
	if from, ok := k.From[ch]; ok && seq < from {
		return nil
	}
	how := "revoked"
	if k.Left == KeyRotate {
		how = "rotated out (replaced by " + k.By.String() + ")"
	}
	if from, ok := k.From[ch]; ok {
		return fmt.Errorf("%w: key %s of %s was %s at key-log entry %d, from seq %d in channel %s; this record is seq %d",
			ErrKeyNotInForce, signer, l.Author, how, k.At, from, ch, seq)
	}
	return fmt.Errorf("%w: key %s of %s was %s at key-log entry %d and signs nothing in channel %s",
		ErrKeyNotInForce, signer, l.Author, how, k.At, ch)
}

// Next returns the record of the key-event ev that would follow the log,
// for the caller to seal with a key in force (SealWith).
func (l *KeyLog) Next(ev KeyEvent, timeMs int64) *Record {
	return &Record{
		Channel: KeyLogID(l.Author), Author: l.Author, Seq: uint64(len(l.Entries)) + 1, Prev: l.Head(),
		Time: timeMs, Kind: KindKeyEvent, Body: ev.Body(),
	}
}

// Append checks key-event s, opened by OpenDelegated, against the log and
// applies it: it must follow the newest entry, be signed by a key in force,
// and leave a key in force.
func (l *KeyLog) Append(s *Signed) error {
	r := s.Record
	switch {
	case r.Kind != KindKeyEvent:
		return fmt.Errorf("%w: a %s is not a key-event", ErrKeyLog, r.Kind)
	case r.Author != l.Author:
		return fmt.Errorf("%w: entry by %s in the log of %s", ErrKeyLog, r.Author, l.Author)
	case r.Channel != KeyLogID(l.Author):
		return fmt.Errorf("%w: entry in %s, not in the key log of %s", ErrKeyLog, r.Channel, l.Author)
	case r.Seq != uint64(len(l.Entries))+1 || r.Prev != l.Head():
		return fmt.Errorf("%w: entry %d (prev %s) does not follow entry %d (%s)", ErrKeyLog, r.Seq, r.Prev, len(l.Entries), l.Head())
	case len(l.Entries) >= MaxKeyLog:
		return fmt.Errorf("%w: a key log holds at most %d entries", ErrKeyLog, MaxKeyLog)
	}
	signer := s.Signer
	if k, ok := l.keys[signer]; !ok || !k.InForce() {
		return fmt.Errorf("%w: entry %d is signed by %s, not a key in force", ErrKeyLog, r.Seq, signer)
	}
	ev, err := ParseKeyEvent(r.Body)
	if err != nil {
		return err
	}
	known := l.keys[ev.Key]
	switch ev.Op {
	case KeyAdd, KeyRotate:
		if known != nil {
			return fmt.Errorf("%w: key %s is already in the log", ErrKeyLog, ev.Key)
		}
		// The reserve: only revocations, and rotations of the main key.
		if len(l.Entries) >= MaxKeyLog-keyLogReserve && (ev.Op == KeyAdd || l.keys[signer].Rank > 0) {
			return fmt.Errorf("%w: the key log holds %d entries; the last %d are kept for revocations and rotations of the main key", ErrKeyLog, len(l.Entries), keyLogReserve)
		}
	case KeyRevoke:
		if known == nil {
			return fmt.Errorf("%w: key %s is not in the log", ErrKeyLog, ev.Key)
		}
		if known.Left == KeyRevoke {
			return fmt.Errorf("%w: key %s is revoked already", ErrKeyLog, ev.Key)
		}
		// A key in force is revoked only by a key ranked above it, a
		// retired one by a key of its rank or above: a device key cannot
		// undo what the company's main key signed.
		if by := l.keys[signer]; ev.Key != signer && (known.InForce() && by.Rank >= known.Rank || !known.InForce() && by.Rank > known.Rank) {
			return fmt.Errorf("%w: %s (rank %d) cannot revoke %s (rank %d): a key revokes only itself, keys added below it and retired keys of its rank or below", ErrKeyLog, signer, by.Rank, ev.Key, known.Rank)
		}
		left := 0
		for _, k := range l.InForce() {
			if k != ev.Key {
				left++
			}
		}
		if left == 0 {
			return fmt.Errorf("%w: revoking %s would leave no key in force; rotate to a new key first", ErrKeyLog, ev.Key)
		}
	}
	switch ev.Op {
	case KeyAdd:
		l.put(&KeyState{Key: ev.Key, Added: r.Seq, Rank: l.keys[signer].Rank + 1})
	case KeyRotate:
		old := l.keys[signer]
		old.Left, old.At, old.By, old.From = KeyRotate, r.Seq, ev.Key, ev.From
		l.put(&KeyState{Key: ev.Key, Added: r.Seq, Rank: old.Rank})
	case KeyRevoke:
		from := ev.From
		if !known.InForce() { // a revocation only narrows what the key signed
			from = map[cid.Cid]uint64{}
			for c, s := range ev.From {
				if old, ok := known.From[c]; ok {
					from[c] = min(s, old)
				}
			}
		}
		known.Left, known.At, known.By, known.From = KeyRevoke, r.Seq, "", from
	}
	l.Entries = append(l.Entries, s)
	return nil
}

// OpenKeyLog verifies a key log's entries, oldest first.
func OpenKeyLog(author peer.ID, envs [][]byte) (*KeyLog, error) {
	if len(envs) > MaxKeyLog {
		return nil, fmt.Errorf("%w: %d entries, at most %d", ErrKeyLog, len(envs), MaxKeyLog)
	}
	l := NewKeyLog(author)
	for i, env := range envs {
		s, err := OpenDelegated(env)
		if err != nil {
			return nil, fmt.Errorf("key log of %s, entry %d: %w", author, i+1, err)
		}
		if err := l.Append(s); err != nil {
			return nil, fmt.Errorf("key log of %s: %w", author, err)
		}
	}
	return l, nil
}

// KeysBody is the body of a keys record that carries l.
func (l *KeyLog) KeysBody() map[string]any {
	log := make([]any, len(l.Entries))
	for i, e := range l.Entries {
		log[i] = base64.RawURLEncoding.EncodeToString(e.Envelope)
	}
	return map[string]any{"log": log}
}

// KeyLogOf reads and verifies the key log a keys record by author carries.
func KeyLogOf(author peer.ID, body map[string]any) (*KeyLog, error) {
	return ExtendKeyLog(nil, author, body)
}

// clone returns a copy of l that Append can extend without changing l.
func (l *KeyLog) clone() *KeyLog {
	c := &KeyLog{Author: l.Author, Entries: slices.Clone(l.Entries), keys: map[peer.ID]*KeyState{}, order: slices.Clone(l.order)}
	for k, s := range l.keys {
		cp := *s
		c.keys[k] = &cp
	}
	return c
}

// ExtendKeyLog reads the key log a keys record by author carries against
// held, the log already verified (nil for none): a log that held extends
// is held itself, without a signature checked; a longer one is held with
// only its new entries verified and applied. A log that forks from held
// is refused.
func ExtendKeyLog(held *KeyLog, author peer.ID, body map[string]any) (*KeyLog, error) {
	if err := ValidateBody(KindKeys, body); err != nil {
		return nil, err
	}
	if held == nil {
		held = NewKeyLog(author)
	}
	if held.Author != author {
		return nil, fmt.Errorf("%w: the log of %s read against that of %s", ErrKeyLog, author, held.Author)
	}
	items, _ := body["log"].([]any)
	var out *KeyLog
	for i, it := range items {
		str, _ := it.(string)
		env, err := base64.RawURLEncoding.DecodeString(str)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d is not base64url: %v", ErrKeyLog, i+1, err)
		}
		if i < len(held.Entries) {
			// The very bytes held, signature and all: a copy of an
			// entry with another signature is not taken unverified.
			if !bytes.Equal(env, held.Entries[i].Envelope) {
				c, _ := EnvelopeCID(env)
				return nil, fmt.Errorf("%w: entry %d is not the envelope of %s held (record %s)", ErrKeyLogForked, i+1, held.Entries[i].CID, c)
			}
			continue
		}
		if out == nil {
			out = held.clone()
		}
		s, err := OpenDelegated(env)
		if err != nil {
			return nil, fmt.Errorf("key log of %s, entry %d: %w", author, i+1, err)
		}
		if err := out.Append(s); err != nil {
			return nil, fmt.Errorf("key log of %s: %w", author, err)
		}
	}
	if out == nil {
		return held, nil
	}
	return out, nil
}

// ErrKeyLogForked: a key log whose entries differ from those of the log
// held for the same company: two logs signed for one company.
var ErrKeyLogForked = errors.New("key log forked")

// Extends reports whether l holds every entry of other, in order, and
// perhaps more: a log that does not is a fork of the key log.
func (l *KeyLog) Extends(other *KeyLog) bool {
	if other == nil {
		return true
	}
	if l.Author != other.Author || len(l.Entries) < len(other.Entries) {
		return false
	}
	for i, e := range other.Entries {
		if l.Entries[i].CID != e.CID {
			return false
		}
	}
	return true
}
