package protocol

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"regexp"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// Record map keys in canonical DAG-CBOR order (length first, then bytewise).
const (
	keyV       = "v"
	keySeq     = "seq"
	keyBody    = "body"
	keyKind    = "kind"
	keyPrev    = "prev"
	keyTime    = "time"
	keyLinks   = "links"
	keyAuthor  = "author"
	keyChannel = "channel"

	keyLinkCID = "cid"
	keyLinkRel = "rel"
)

// MaxLinks is the most links a record may carry.
const MaxLinks = 1024

var (
	kindPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
	relPattern  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)
)

// Check reports whether r is structurally sound: the format version, the
// channel present except in a genesis, seq from 1, prev present exactly when
// seq > 1, a well-formed kind and links, and a body. It does not check the
// body against the kind's schema; see ValidateBody.
func (r *Record) Check() error {
	if r.Kind == KindChannelGenesis {
		if r.Channel.Defined() {
			return fmt.Errorf("%w: a channel genesis has no channel", ErrMalformed)
		}
	} else if !r.Channel.Defined() {
		return fmt.Errorf("%w: channel is missing", ErrMalformed)
	}
	if r.Author == "" {
		return fmt.Errorf("%w: author is missing", ErrMalformed)
	}
	if k, err := r.Author.ExtractPublicKey(); err != nil || k.Type() != pb.KeyType_Ed25519 {
		return fmt.Errorf("%w: author %s is not the peer ID of an ed25519 key", ErrMalformed, truncate(r.Author.String()))
	}
	if r.Seq == 0 {
		return fmt.Errorf("%w: seq must be 1 or more", ErrMalformed)
	}
	if r.Seq > 1<<62 {
		return fmt.Errorf("%w: seq %d is out of range", ErrMalformed, r.Seq)
	}
	if r.Seq == 1 && r.Prev.Defined() {
		return fmt.Errorf("%w: prev must be null when seq is 1", ErrMalformed)
	}
	if r.Seq > 1 && !r.Prev.Defined() {
		return fmt.Errorf("%w: prev is missing for seq %d", ErrMalformed, r.Seq)
	}
	if r.Time < 0 {
		return fmt.Errorf("%w: time %d is before 1970", ErrMalformed, r.Time)
	}
	if !kindPattern.MatchString(r.Kind) {
		return fmt.Errorf("%w: kind %q must be lower-case letters, digits and dashes", ErrMalformed, truncate(r.Kind))
	}
	if len(r.Links) > MaxLinks {
		return fmt.Errorf("%w: %d links, at most %d allowed", ErrMalformed, len(r.Links), MaxLinks)
	}
	for i, l := range r.Links {
		if !relPattern.MatchString(l.Rel) {
			return fmt.Errorf("%w: links/%d: rel %q must be lower-case letters, digits and dashes", ErrMalformed, i, truncate(l.Rel))
		}
		if !l.CID.Defined() {
			return fmt.Errorf("%w: links/%d: cid is missing", ErrMalformed, i)
		}
	}
	if r.Body == nil {
		return fmt.Errorf("%w: body is missing", ErrMalformed)
	}
	return nil
}

// Encode returns the canonical DAG-CBOR encoding of r.
func (r *Record) Encode() ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	n := 9
	if !r.Channel.Defined() {
		n = 8
	}
	b := make([]byte, 0, 512)
	b = appendHead(b, majMap, uint64(n))
	b = appendText(b, keyV)
	b = appendInt(b, Version)
	b = appendText(b, keySeq)
	b = appendHead(b, majUint, r.Seq)
	b = appendText(b, keyBody)
	b, err := appendValue(b, r.Body, 1)
	if err != nil {
		return nil, at(err, "body")
	}
	b = appendText(b, keyKind)
	b = appendText(b, r.Kind)
	b = appendText(b, keyPrev)
	if r.Prev.Defined() {
		b = appendCID(b, r.Prev)
	} else {
		b = append(b, majSimple<<5|simpleNull)
	}
	b = appendText(b, keyTime)
	b = appendInt(b, r.Time)
	b = appendText(b, keyLinks)
	b = appendHead(b, majArray, uint64(len(r.Links)))
	for _, l := range r.Links {
		b = appendHead(b, majMap, 2)
		b = appendText(b, keyLinkCID)
		b = appendCID(b, l.CID)
		b = appendText(b, keyLinkRel)
		b = appendText(b, l.Rel)
	}
	b = appendText(b, keyAuthor)
	b = appendHead(b, majBytes, uint64(len(r.Author)))
	b = append(b, r.Author...)
	if r.Channel.Defined() {
		b = appendText(b, keyChannel)
		b = appendCID(b, r.Channel)
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("record is %d bytes: %w (the limit is %d bytes)", len(b), ErrTooLarge, MaxRecordSize)
	}
	return b, nil
}

// Decode decodes a record from its canonical DAG-CBOR encoding. It rejects
// anything that is not canonical, has unknown or missing fields, or fails
// Check: for any bytes it accepts, Encode reproduces them exactly.
func Decode(b []byte) (*Record, error) {
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("record is %d bytes: %w (the limit is %d bytes)", len(b), ErrTooLarge, MaxRecordSize)
	}
	v, err := DecodeValue(b)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a record must be a map", ErrMalformed)
	}
	r := &Record{}
	for k, v := range m {
		var err error
		switch k {
		case keyV:
			if n, ok := v.(int64); !ok || n != Version {
				err = fmt.Errorf("format version %v, want %d", v, Version)
			}
		case keySeq:
			n, ok := v.(int64)
			if !ok || n < 1 {
				err = fmt.Errorf("seq must be an integer of 1 or more")
			}
			r.Seq = uint64(n)
		case keyBody:
			if r.Body, ok = v.(map[string]any); !ok {
				err = fmt.Errorf("body must be a map")
			}
		case keyKind:
			if r.Kind, ok = v.(string); !ok {
				err = fmt.Errorf("kind must be a string")
			}
		case keyPrev:
			if v != nil {
				if r.Prev, ok = v.(cid.Cid); !ok {
					err = fmt.Errorf("prev must be a link or null")
				}
			}
		case keyTime:
			if r.Time, ok = v.(int64); !ok {
				err = fmt.Errorf("time must be an integer")
			}
		case keyLinks:
			r.Links, err = decodeLinks(v)
		case keyAuthor:
			raw, ok := v.([]byte)
			if !ok {
				err = fmt.Errorf("author must be bytes")
				break
			}
			if r.Author, err = peer.IDFromBytes(raw); err != nil {
				err = fmt.Errorf("author: %v", err)
			}
		case keyChannel:
			if r.Channel, ok = v.(cid.Cid); !ok {
				err = fmt.Errorf("channel must be a link")
			}
		default:
			err = fmt.Errorf("unknown field %q", truncate(k))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	for _, k := range []string{keyV, keySeq, keyBody, keyKind, keyPrev, keyTime, keyLinks, keyAuthor} {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("%w: field %q is missing", ErrMalformed, k)
		}
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	// The decoder accepts only canonical forms, so this holds by construction;
	// checking it keeps the guarantee independent of the decoder's details.
	again, err := r.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	return r, nil
}

func decodeLinks(v any) ([]Link, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("links must be a list")
	}
	if len(l) == 0 {
		return nil, nil
	}
	links := make([]Link, len(l))
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok || len(m) != 2 {
			return nil, fmt.Errorf("links/%d must be a map of cid and rel", i)
		}
		if links[i].CID, ok = m[keyLinkCID].(cid.Cid); !ok {
			return nil, fmt.Errorf("links/%d/cid must be a link", i)
		}
		if links[i].Rel, ok = m[keyLinkRel].(string); !ok {
			return nil, fmt.Errorf("links/%d/rel must be a string", i)
		}
	}
	return links, nil
}

// Sum returns the content address of encoded record bytes:
// CIDv1, dag-cbor, sha2-256.
func Sum(b []byte) cid.Cid {
	d := sha256.Sum256(b)
	h := make([]byte, 0, 2+len(d))
	h = append(h, mh.SHA2_256, byte(len(d)))
	return cid.NewCidV1(cid.DagCBOR, append(h, d[:]...))
}
