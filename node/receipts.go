package node

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sangsaeng/sangsaeng/node/api"
	sp "github.com/sangsaeng/sangsaeng/protocol"
)

// ReceiptID is the protocol by which a member asks another for a signed
// receipt of what it holds of a channel, now.
const ReceiptID = protocol.ID("/sangsaeng/receipt/1.1.0")

// Signed receipts: a member's node states, in a heads-receipt record of its
// own chain, the newest contiguous record of every other member that it
// holds of a channel. It publishes one when that changed by a record that is
// not itself a receipt (receipts answering receipts would never end), at
// most every receipt_interval, and whenever a member asks (ReceiptID). An
// author reads them with Receipts: who holds its records up to which seq,
// since when; each is a signed record, verifiable offline and carried by
// evidence bundles as any other record of the channel.
type receipts struct {
	mu     sync.Mutex
	last   map[cid.Cid]*sp.Signed // the node's newest receipt per channel (nil: none), once looked up
	forced map[cid.Cid]time.Time  // when a member's request last made one
	one    sync.Mutex             // one receipt made at a time
}

// forcedEvery bounds the receipts members' requests make: one per channel
// in that time; a request in between gets the newest.
const forcedEvery = 10 * time.Second

// receiptHeads is what the node holds of ch: each other author's
// contiguous head, with its CID.
func (n *Node) receiptHeads(ch cid.Cid) (map[peer.ID]uint64, []any, error) {
	heads, err := n.store.Heads(ch)
	if err != nil {
		return nil, nil, err
	}
	delete(heads, n.self)
	var body []any
	for _, a := range slices.Sorted(maps.Keys(heads)) {
		h := heads[a]
		if h == 0 {
			delete(heads, a)
			continue
		}
		recs, err := n.store.ByAuthor(ch, a, h, h)
		if err != nil || len(recs) != 1 {
			delete(heads, a)
			continue
		}
		body = append(body, map[string]any{"author": a.String(), "seq": int64(h), "cid": recs[0].CID.String()})
	}
	return heads, body, nil
}

// lastReceipt is the node's newest receipt in ch: from this run, else the
// newest stored.
func (n *Node) lastReceipt(ch cid.Cid) *sp.Signed {
	n.receipts.mu.Lock()
	defer n.receipts.mu.Unlock()
	if s, looked := n.receipts.last[ch]; looked {
		return s
	}
	var newest *sp.Signed
	if err := n.scanReceipts(ch, func(s *sp.Signed) {
		if s.Record.Author == n.self && (newest == nil || s.Record.Seq > newest.Record.Seq) {
			newest = s
		}
	}); err == nil {
		n.receipts.last[ch] = newest // none, too: the store is not read again for it
	}
	return newest
}

// receiptHeadsOf reads a receipt's heads: seqs by author (none for a body
// that does not parse; a stored receipt passed its schema).
func receiptHeadsOf(s *sp.Signed) map[peer.ID]uint64 {
	out := map[peer.ID]uint64{}
	held, _ := sp.ParseHeadsReceipt(s.Record.Body)
	for a, h := range held {
		out[a] = h.Seq
	}
	return out
}

// receipt publishes a receipt of what the node holds of ch when that
// changed since its last one by a record that is not a receipt; with force,
// when it changed at all. It returns the newest receipt, new or not (nil
// when the node holds nothing of others).
func (n *Node) receipt(ctx context.Context, ch cid.Cid, force bool) (*sp.Signed, error) {
	n.receipts.one.Lock()
	defer n.receipts.one.Unlock()
	if force {
		n.receipts.mu.Lock()
		limited := time.Since(n.receipts.forced[ch]) < forcedEvery
		if !limited {
			n.receipts.forced[ch] = time.Now()
		}
		n.receipts.mu.Unlock()
		if limited { // a member asking again and again gets the newest
			return n.lastReceipt(ch), nil
		}
	}
	heads, body, err := n.receiptHeads(ch)
	if err != nil {
		return nil, err
	}
	last := n.lastReceipt(ch)
	var was map[peer.ID]uint64
	if last != nil {
		was = receiptHeadsOf(last)
	}
	changed := false
	for a, h := range heads {
		if h <= was[a] {
			continue
		}
		if force {
			changed = true
			break
		}
		// Only receipts since the last one: nothing to answer.
		recs, err := n.store.ByAuthor(ch, a, was[a]+1, h)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(recs, func(s *sp.Signed) bool { return s.Record.Kind != sp.KindHeadsReceipt }) {
			changed = true
			break
		}
	}
	if !changed {
		return last, nil
	}
	s, err := n.Publish(ctx, ch, sp.KindHeadsReceipt, map[string]any{"heads": body}, nil)
	if err != nil {
		return nil, err
	}
	n.receipts.mu.Lock()
	n.receipts.last[ch] = s
	n.receipts.mu.Unlock()
	return s, nil
}

// receiptLoop publishes the node's receipts every receipt_interval where
// they changed.
func (n *Node) receiptLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReceiptInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		for _, ch := range n.gov.joined() {
			ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
			if _, err := n.receipt(ctx, ch, false); err != nil && n.ctx.Err() == nil {
				n.log.Warn("receipt not published", "channel", ch, "err", err)
			}
			cancel()
		}
	}
}

// handleReceipt answers a member's request for a receipt of a channel now:
// a status frame (empty for yes, a reason for no), then the receipt's
// envelope (empty when the node holds nothing of others).
func (n *Node) handleReceipt(st network.Stream) {
	defer st.Close()
	from := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(time.Minute))
	raw, err := readFrame(bufio.NewReader(st), 128)
	if err != nil {
		st.Reset()
		return
	}
	ch, err := cid.Cast(raw)
	if err != nil || !n.gov.isJoined(ch) || !n.gov.memberOf(ch, from) {
		_ = writeFrame(st, []byte("refused: not a member of that channel"))
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	s, err := n.receipt(ctx, ch, true)
	if err != nil {
		_ = writeFrame(st, []byte("no receipt: "+err.Error()))
		return
	}
	var env []byte
	if s != nil {
		env = s.Envelope
	}
	if writeFrame(st, nil) != nil || writeFrame(st, env) != nil {
		st.Reset()
	}
}

// RequestReceipts asks every connected member of ch for a receipt now and
// stores the answers; it returns how many answered.
func (n *Node) RequestReceipts(ctx context.Context, ch cid.Cid) (int, error) {
	snap, ok := n.gov.channel(ch)
	if !ok || !n.gov.isJoined(ch) {
		return 0, fmt.Errorf("receipts of %s: %w", ch, ErrNotJoined)
	}
	got := 0
	var errs []error
	for _, p := range snap.members {
		if p == n.self || n.host.Network().Connectedness(p) != network.Connected {
			continue
		}
		env, err := n.askReceipt(ctx, p, ch)
		if err == nil && len(env) > 0 {
			if _, err = n.ingest(ch, env, p, opSync); errors.Is(err, errIgnore) {
				err = nil // held already
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		got++
	}
	return got, errors.Join(errs...)
}

func (n *Node) askReceipt(ctx context.Context, p peer.ID, ch cid.Cid) ([]byte, error) {
	st, err := n.host.NewStream(ctx, p, ReceiptID)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := writeFrame(st, ch.Bytes()); err != nil {
		st.Reset()
		return nil, err
	}
	_ = st.CloseWrite()
	r := bufio.NewReader(st)
	status, err := readFrame(r, 1024)
	if err != nil {
		return nil, err
	}
	if len(status) > 0 {
		return nil, fmt.Errorf("%s", status)
	}
	return readFrame(r, sp.MaxEnvelopeSize)
}

// scanReceipts calls fn with every receipt the node holds of ch.
func (n *Node) scanReceipts(ch cid.Cid, fn func(*sp.Signed)) error {
	return n.store.ScanKind(sp.KindHeadsReceipt, func(s *sp.Signed) error {
		if s.ChannelOf() == ch {
			fn(s)
		}
		return nil
	})
}

// Receipts says, for each other member of ch, up to which seq its newest
// receipt says it holds this node's records, since when (the first of its
// receipts to say so), and that receipt, signed.
func (n *Node) Receipts(ch cid.Cid) ([]api.Receipt, error) {
	snap, ok := n.gov.channel(ch)
	if !ok {
		return nil, fmt.Errorf("receipts of %s: %w", ch, ErrNotJoined)
	}
	byMember := map[peer.ID][]*sp.Signed{}
	if err := n.scanReceipts(ch, func(s *sp.Signed) {
		if s.Record.Author != n.self {
			byMember[s.Record.Author] = append(byMember[s.Record.Author], s)
		}
	}); err != nil {
		return nil, err
	}
	own, err := n.store.Head(ch, n.self)
	if err != nil {
		return nil, err
	}
	out := []api.Receipt{}
	for _, p := range snap.members {
		if p == n.self {
			continue
		}
		r := api.Receipt{Member: p.String(), Name: n.gov.name(p), Head: own}
		rs := byMember[p]
		slices.SortFunc(rs, func(a, b *sp.Signed) int { return cmp.Compare(a.Record.Seq, b.Record.Seq) })
		if len(rs) > 0 {
			newest := rs[len(rs)-1]
			r.Seq = receiptHeadsOf(newest)[n.self]
			r.CID = newest.CID.String()
			r.Time = time.UnixMilli(newest.Record.Time).UTC().Format(time.RFC3339)
			r.Envelope = base64.RawURLEncoding.EncodeToString(newest.Envelope)
			since := newest
			for i := len(rs) - 1; i >= 0 && receiptHeadsOf(rs[i])[n.self] >= r.Seq; i-- {
				since = rs[i]
			}
			r.Since = time.UnixMilli(since.Record.Time).UTC().Format(time.RFC3339)
		}
		out = append(out, r)
	}
	return out, nil
}

func (n *Node) apiReceipts(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	return n.Receipts(ch)
}

func (n *Node) apiRequestReceipts(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	got, err := n.RequestReceipts(r.Context(), ch)
	if err != nil && got == 0 {
		return nil, err
	}
	return n.Receipts(ch)
}
