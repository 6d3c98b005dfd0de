package node

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// JoinID is the protocol a joining member uses to fetch a channel's
// governance chain (genesis, membership changes, profiles) from its inviter.
const JoinID = libp2pproto.ID("/sangsaeng/join/1.1.0")

// Limits of the join protocol. A joining node holds the whole governance
// chain it is sent before it checks it (the records may come out of causal
// order), so the chain is bounded in bytes as well as in records, against
// the daemon's 80 MiB heap soft limit: 16 MiB of envelopes (about 48 MiB
// decoded at worst) is some thousands of membership changes and profiles
// of the usual size (well under 4 KiB each), far more than a supply-chain
// channel makes, and 64 of the largest possible records.
const (
	maxJoinRecords = 10_000
	maxJoinBytes   = 16 << 20
	joinTimeout    = 30 * time.Second
	// joinProfilePage is how many profile records handleJoin reads from
	// the store at once: 16 envelopes of at most protocol.MaxEnvelopeSize.
	joinProfilePage = 16
)

// invitePrefix starts every invite code.
const invitePrefix = "ssinv1."

// invite is what an invite code carries.
type invite struct {
	Channel string   `json:"c"`
	Inviter string   `json:"p"`
	Addrs   []string `json:"a"`
}

// ErrBadInvite is returned for an invite code that does not parse.
var ErrBadInvite = errors.New("bad invite code")

func encodeInvite(iv invite) string {
	b, _ := json.Marshal(iv) // plain strings always marshal
	return invitePrefix + base64.RawURLEncoding.EncodeToString(b)
}

func decodeInvite(code string) (cid.Cid, peer.AddrInfo, error) {
	fail := func(why string) (cid.Cid, peer.AddrInfo, error) {
		return cid.Undef, peer.AddrInfo{}, fmt.Errorf("%w: %s (ask the inviter for a fresh `sangsaeng channel invite`)", ErrBadInvite, why)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(code), invitePrefix)
	if !ok {
		return fail("it must start with " + invitePrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return fail("it is cut or mistyped")
	}
	var iv invite
	if err := json.Unmarshal(b, &iv); err != nil {
		return fail("it is cut or mistyped")
	}
	ch, err := cid.Decode(iv.Channel)
	if err != nil {
		return fail("bad channel ID")
	}
	id, err := peer.Decode(iv.Inviter)
	if err != nil {
		return fail("bad inviter peer ID")
	}
	return ch, peer.AddrInfo{ID: id, Addrs: parseAddrs(iv.Addrs)}, nil
}

// Invite adds p to ch, which the node must administer, and returns the
// invite code p's operator passes to `sangsaeng channel join`.
func (n *Node) Invite(ctx context.Context, ch cid.Cid, p peer.ID) (string, error) {
	if err := n.AddMember(ctx, ch, p); err != nil {
		return "", fmt.Errorf("invite: %w", err)
	}
	iv := invite{Channel: ch.String(), Inviter: n.self.String()}
	// The host's addresses, and those through the relays it holds a slot
	// at (the host lists them too, once it has looked at its addresses
	// again): a joiner behind another NAT dials those.
	for _, a := range append(n.host.Addrs(), n.relays.circuitAddrs()...) {
		if s := a.String(); !slices.Contains(iv.Addrs, s) {
			iv.Addrs = append(iv.Addrs, s)
		}
	}
	return encodeInvite(iv), nil
}

// Join joins a channel with an invite code: it connects to the inviter,
// fetches the channel's governance chain, checks it (the genesis is the
// invite's channel, every signature verifies, the chain makes this node and
// the inviter members), stores it, subscribes, and shares the node's
// profile. Only then does the inviter enter the partner book: until its
// answer checks out it is admitted for this join alone, so that a bad
// invite or a bad answer leaves no trace there.
func (n *Node) Join(ctx context.Context, code string) (cid.Cid, error) {
	ch, inviter, err := decodeInvite(code)
	if err != nil {
		return cid.Undef, err
	}
	if inviter.ID == n.self {
		return cid.Undef, fmt.Errorf("join: this invite was made by this node")
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	admitted := false
	release := n.admitForJoin(inviter.ID)
	defer func() { release(admitted) }()
	// The relays the invite's addresses go through: a relay serves only
	// its partners, so this node reaches the inviter through one only if
	// it shares a channel with it already (the gater admits it then); it
	// keeps them, and a slot at them, once the join succeeds.
	relays := slices.DeleteFunc(relaysOf(inviter.Addrs), func(r peer.AddrInfo) bool { return r.ID == n.self || r.ID == inviter.ID })
	for _, r := range relays {
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, peerstore.TempAddrTTL)
	}
	n.host.Peerstore().AddAddrs(inviter.ID, inviter.Addrs, peerstore.TempAddrTTL)
	if err := n.host.Connect(ctx, inviter); err != nil {
		for _, r := range relays {
			if !n.gov.isPartner(r.ID) && !n.partners.manual(r.ID) {
				return cid.Undef, fmt.Errorf("join: cannot reach the inviter %s, which is behind NAT and reachable through relay %s only; "+
					"a relay serves only its partners, and it shares no channel with this node: ask the relay's company to invite you to a channel first, then join again (%w)", inviter.ID, r.ID, err)
			}
		}
		return cid.Undef, fmt.Errorf("join: cannot reach the inviter %s: %w", inviter.ID, err)
	}
	envs, err := n.fetchGovernance(ctx, inviter.ID, ch)
	if err != nil {
		return cid.Undef, fmt.Errorf("join: %w", err)
	}
	if err := verifyJoin(ch, n.self, inviter.ID, envs); err != nil {
		return cid.Undef, fmt.Errorf("join %s: the inviter's answer does not check out: %w; ask the inviter for a fresh `sangsaeng channel invite`", ch, err)
	}
	if err := n.ingestAll(ch, envs, inviter.ID); err != nil {
		return cid.Undef, fmt.Errorf("join: %w", err)
	}
	if !n.gov.isJoined(ch) {
		return cid.Undef, fmt.Errorf("join %s: %w: the inviter's governance chain does not list this node", ch, ErrNotJoined)
	}
	// The inviter's addresses are kept, but it is admitted only while it
	// shares a channel with this node: an invite is not a hand-added
	// partner, and a later removal must be able to cut it off.
	if err := n.rememberPartner(inviter.ID, inviter.Addrs, "", false); err != nil {
		return cid.Undef, fmt.Errorf("join: %w", err)
	}
	n.host.Peerstore().AddAddrs(inviter.ID, inviter.Addrs, peerstore.PermanentAddrTTL)
	if err := n.relays.learn(relays); err != nil {
		return cid.Undef, fmt.Errorf("join: %w", err)
	}
	admitted = true
	n.sync.schedule(inviter.ID, ch) // the channel's history, and our own head
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
	defer mcancel()
	if !n.waitMesh(mctx, ch, inviter.ID) {
		n.log.Warn("the inviter is not in this node's mesh yet; records will arrive by sync", "channel", ch, "peer", inviter.ID)
	}
	n.keyMu.RLock()
	if err := n.spreadKeyLog(ctx); err != nil { // a company that changed keys
		n.log.Warn("key log not sent to the channel joined", "channel", ch, "err", err)
	}
	n.keyMu.RUnlock()
	n.shareProfile(ctx, ch)
	n.log.Info("joined channel", "channel", ch, "inviter", inviter.ID)
	return ch, nil
}

// errBadJoinAnswer is an inviter's answer that does not check out.
var errBadJoinAnswer = errors.New("bad governance chain")

// verifyJoin checks an inviter's answer before anything of it is kept:
// every envelope opens (canonical, signed by its author) and holds a valid
// body of channel ch, the genesis among them is ch's (its CID is the
// channel ID), and the membership it and the changes decide makes self and
// the inviter members.
func verifyJoin(ch cid.Cid, self, inviter peer.ID, envs [][]byte) error {
	var genesis *protocol.Signed
	var changes []*protocol.Signed
	for i, env := range envs {
		s, err := protocol.OpenDelegated(env) // signers are checked as the records are ingested
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", errBadJoinAnswer, i, err)
		}
		if got := s.ChannelOf(); got != ch {
			return fmt.Errorf("%w: record %d is of channel %s, not of the invite's", errBadJoinAnswer, i, got)
		}
		if err := protocol.ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
			return fmt.Errorf("%w: record %d: %w", errBadJoinAnswer, i, err)
		}
		switch s.Record.Kind {
		case protocol.KindChannelGenesis:
			genesis = s // its CID is ch: ChannelOf is the CID of a genesis
		case protocol.KindChannelMembers:
			changes = append(changes, s)
		}
	}
	if genesis == nil {
		return fmt.Errorf("%w: no genesis of channel %s in it", errBadJoinAnswer, ch)
	}
	v := protocol.Membership(genesis, changes)
	if !v.IsMember(self) {
		return fmt.Errorf("%w: the chain of %s does not list this node", ErrNotJoined, ch)
	}
	if !v.IsMember(inviter) {
		return fmt.Errorf("%w: the inviter %s is not a member of %s in it", errBadJoinAnswer, inviter, ch)
	}
	return nil
}

// joining counts the joins under way per node and inviter, admitted by the
// gater while they run.
var joining = struct {
	sync.Mutex
	m map[joinKey]int
}{m: map[joinKey]int{}}

type joinKey struct {
	n *Node
	p peer.ID
}

// admitForJoin lets the gater admit p while a join with it runs, without
// putting it in the partner book. The function returned ends that; unless
// the join admitted p for good, it disconnects p when the gater would no
// longer admit it.
func (n *Node) admitForJoin(p peer.ID) func(admitted bool) {
	k := joinKey{n, p}
	joining.Lock()
	joining.m[k]++
	if _, configured := n.gater.extra.Load(p); !configured {
		n.gater.extra.Store(p, joinAdmitted{})
	}
	joining.Unlock()
	return func(admitted bool) {
		joining.Lock()
		joining.m[k]--
		last := joining.m[k] == 0
		if last {
			delete(joining.m, k)
			if v, ok := n.gater.extra.Load(p); ok && v == (joinAdmitted{}) {
				n.gater.extra.Delete(p)
			}
		}
		joining.Unlock()
		if last && !admitted {
			n.closeIfStranger(p)
		}
	}
}

// joinAdmitted marks a gater entry made by admitForJoin.
type joinAdmitted struct{}

// ingestAll checks and stores records whose order may not be causal:
// a membership change may come before the change that made its author an
// admin. It makes passes until no record is left or a pass adds nothing.
func (n *Node) ingestAll(ch cid.Cid, envs [][]byte, from peer.ID) error {
	// The members' key logs first: a genesis or change signed by a
	// rotated key counts by its author's, and the keys record that
	// carries it cannot be stored before the genesis. A log verifies on
	// its own, from its company's first key.
	for _, env := range envs {
		if s, err := protocol.OpenDelegated(env); err == nil && s.Record.Kind == protocol.KindKeys && s.ChannelOf() == ch {
			if l, err := protocol.ExtendKeyLog(n.gov.keyLog(s.Record.Author), s.Record.Author, s.Record.Body); err == nil {
				n.gov.learnKeyLog(l)
			}
		}
	}
	pending := envs
	for len(pending) > 0 {
		var next [][]byte
		var lastErr error
		for _, env := range pending {
			_, err := n.ingest(ch, env, from, opJoin)
			switch {
			case isStoreFailure(err):
				return fmt.Errorf("storing the channel's governance chain: %w; see `sangsaeng status`, fix the store and join again", err)
			case err == nil, errors.Is(err, errIgnore):
			case errors.Is(err, ErrNotMember), errors.Is(err, ErrNotAdmin), errors.Is(err, ErrUnknownChannel), errors.Is(err, ErrPendingChange):
				next, lastErr = append(next, env), err
			default:
				return err
			}
		}
		if len(next) == len(pending) {
			return fmt.Errorf("%d governance records do not check out: %w", len(next), lastErr)
		}
		pending = next
	}
	return nil
}

// fetchGovernance asks p for the governance chain of ch.
func (n *Node) fetchGovernance(ctx context.Context, p peer.ID, ch cid.Cid) ([][]byte, error) {
	st, err := n.host.NewStream(ctx, p, JoinID)
	if err != nil {
		return nil, fmt.Errorf("open %s to %s: %w", JoinID, p, err)
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	if err := writeFrame(st, ch.Bytes()); err != nil {
		st.Reset()
		return nil, err
	}
	if err := st.CloseWrite(); err != nil {
		st.Reset()
		return nil, err
	}
	r := bufio.NewReader(st)
	status, err := readFrame(r, 1024)
	if err != nil {
		st.Reset()
		return nil, fmt.Errorf("the inviter did not answer: %w", err)
	}
	if len(status) > 0 {
		return nil, fmt.Errorf("the inviter refused: %s", status)
	}
	var envs [][]byte
	size := 0
	for {
		env, err := readFrame(r, min(protocol.MaxEnvelopeSize, maxJoinBytes-size))
		if errors.Is(err, errFrameTooLarge) && size > 0 {
			st.Reset()
			return nil, fmt.Errorf("the inviter sent more than %d bytes of governance records (%d records so far); "+
				"a channel's governance chain is far smaller: ask the inviter's operator to check that node", maxJoinBytes, len(envs))
		}
		if err != nil {
			st.Reset()
			return nil, fmt.Errorf("reading the governance chain: %w", err)
		}
		if len(env) == 0 {
			return envs, nil
		}
		if len(envs) == maxJoinRecords {
			st.Reset()
			return nil, fmt.Errorf("the inviter sent more than %d governance records; "+
				"a channel's governance chain is far smaller: ask the inviter's operator to check that node", maxJoinRecords)
		}
		envs = append(envs, env)
		size += len(env)
	}
}

// handleJoin answers a member's request for a channel's governance chain:
// the status frame (empty for yes, a reason for no), the records, and an
// empty frame to end.
func (n *Node) handleJoin(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(joinTimeout))
	from := st.Conn().RemotePeer()
	raw, err := readFrame(bufio.NewReader(st), 128)
	if err != nil {
		st.Reset()
		return
	}
	ch, err := cid.Cast(raw)
	refuse := func(why string) {
		_ = writeFrame(st, []byte(why))
	}
	if err != nil {
		refuse("bad channel ID")
		return
	}
	snap, ok := n.gov.channel(ch)
	if !ok || !n.gov.isJoined(ch) {
		refuse("this node is not in that channel")
		return
	}
	if !n.gov.memberOf(ch, from) {
		n.log.Info("join refused: not a member", "peer", from, "channel", ch)
		refuse("you are not a member of that channel; ask an admin to invite you")
		return
	}
	w := bufio.NewWriter(st)
	if err := writeFrame(w, nil); err != nil {
		st.Reset()
		return
	}
	for _, s := range snap.governance {
		if err := writeFrame(w, s.Envelope); err != nil {
			st.Reset()
			return
		}
	}
	err = n.channelProfiles(ch, func(env []byte) error { return writeFrame(w, env) })
	if err != nil {
		st.Reset()
		return
	}
	if err := writeFrame(w, nil); err != nil || w.Flush() != nil {
		st.Reset()
	}
}

// channelProfiles calls fn with the envelope of each profile record in ch,
// reading joinProfilePage records at a time.
func (n *Node) channelProfiles(ch cid.Cid, fn func(env []byte) error) error {
	cursor := ""
	for {
		recs, next, err := n.store.ByKind(protocol.KindProfile, joinProfilePage, cursor)
		if err != nil {
			return err
		}
		for _, s := range recs {
			if s.ChannelOf() == ch {
				if err := fn(s.Envelope); err != nil {
					return err
				}
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

// writeFrame writes a varint length and the bytes.
func writeFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:k]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// errFrameTooLarge is returned for a frame beyond the reader's limit.
var errFrameTooLarge = errors.New("frame too large")

// frameChunk is how much of a frame readFrame allocates before its bytes
// arrive: a peer that announces a large frame and sends it slowly (or
// never) holds no more memory than it sent, plus this.
const frameChunk = 64 << 10

// readFrame reads one frame of at most max bytes.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if l > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errFrameTooLarge, l, max)
	}
	if l <= frameChunk {
		b := make([]byte, l)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b := make([]byte, 0, frameChunk)
	for uint64(len(b)) < l {
		k := min(l-uint64(len(b)), uint64(cap(b)-len(b)))
		if k == 0 {
			b = slices.Grow(b, int(min(l-uint64(len(b)), uint64(cap(b)))))
			continue
		}
		if _, err := io.ReadFull(r, b[len(b):len(b)+int(k)]); err != nil {
			return nil, err
		}
		b = b[:len(b)+int(k)]
	}
	return b, nil
}
