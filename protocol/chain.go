package protocol

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ChainKey names a position in an author's chain: each (channel, author, seq)
// may hold one record only. The channel of a genesis is its own CID.
type ChainKey struct {
	Channel cid.Cid
	Author  peer.ID
	Seq     uint64
}

// ChannelOf returns the channel a record belongs to: its Channel field, or
// for a channel genesis the channel it founds, which is the genesis CID.
func (s *Signed) ChannelOf() cid.Cid {
	if s.Record.Kind == KindChannelGenesis {
		return s.CID
	}
	return s.Record.Channel
}

// Key returns the record's position in its author's chain.
func (s *Signed) Key() ChainKey {
	return ChainKey{Channel: s.ChannelOf(), Author: s.Record.Author, Seq: s.Record.Seq}
}

// CheckNext reports whether next may directly follow prev in an author's
// chain: the same channel and author, the next seq, and a prev link to prev.
func CheckNext(prev, next *Signed) error {
	switch {
	case prev.ChannelOf() != next.ChannelOf():
		return fmt.Errorf("%w: %s is in channel %s, %s in %s", ErrChain, next.CID, next.ChannelOf(), prev.CID, prev.ChannelOf())
	case prev.Record.Author != next.Record.Author:
		return fmt.Errorf("%w: %s is by %s, %s by %s", ErrChain, next.CID, next.Record.Author, prev.CID, prev.Record.Author)
	case next.Record.Seq != prev.Record.Seq+1:
		return fmt.Errorf("%w: seq %d cannot follow seq %d", ErrChain, next.Record.Seq, prev.Record.Seq)
	case next.Record.Prev != prev.CID:
		return fmt.Errorf("%w: seq %d links prev %s, not %s", ErrChain, next.Record.Seq, next.Record.Prev, prev.CID)
	}
	return nil
}

// Fork is evidence of equivocation: two records, each validly signed by the
// same author, for the same position in the author's chain.
type Fork struct {
	A, B *Signed
}

// Check reports whether f proves equivocation. Records from Open are
// verified; Fork re-checks only that they collide.
func (f Fork) Check() error {
	if f.A == nil || f.B == nil {
		return fmt.Errorf("%w: two records are needed", ErrNotFork)
	}
	if f.A.CID == f.B.CID {
		return fmt.Errorf("%w: both are %s", ErrNotFork, f.A.CID)
	}
	if f.A.Key() != f.B.Key() {
		return fmt.Errorf("%w: %s and %s hold different chain positions", ErrNotFork, f.A.CID, f.B.CID)
	}
	return nil
}

// OpenFork verifies two envelopes and checks that they prove equivocation.
func OpenFork(a, b []byte) (Fork, error) {
	sa, err := Open(a)
	if err != nil {
		return Fork{}, fmt.Errorf("fork evidence: first record: %w", err)
	}
	sb, err := Open(b)
	if err != nil {
		return Fork{}, fmt.Errorf("fork evidence: second record: %w", err)
	}
	f := Fork{A: sa, B: sb}
	return f, f.Check()
}
