package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// Key files in the home (docs/design.md, "Keys"). identity.key is the
// company's first key: its peer ID names the company and the node's libp2p
// host. Once the company rotates, keys/signing.key is the key the node signs
// records with; a key a rotation replaced is moved to keys/retired/, never
// deleted; a device key made for another server is written to keys/devices/
// for the operator to carry there.
const (
	KeysDir        = "keys"
	signingKeyFile = "signing.key"
	nextKeyFile    = "next.key"
)

// signingKey is the key the node signs its records with.
type signingKey struct {
	key crypto.PrivKey
	id  peer.ID
}

func newSigningKey(k crypto.PrivKey) (*signingKey, error) {
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &signingKey{key: k, id: id}, nil
}

// SigningKey reads the key the node signs with: keys/signing.key once the
// company rotated, else the identity key.
func (c *Config) SigningKey() (crypto.PrivKey, error) {
	k, err := readKeyFile("signing key", filepath.Join(c.Home, KeysDir, signingKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return c.Identity()
	}
	return k, err
}

// readKeyFile reads a libp2p-marshalled private key; what names it in
// errors.
func readKeyFile(what, path string) (crypto.PrivKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return k, nil
}

// writeKeyFile writes k to path, which must not exist, durably, 0600.
func writeKeyFile(path string, k crypto.PrivKey) error {
	raw, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The file's name, and the directories made for it, durable too.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(filepath.Dir(path)))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// KeyLog returns the company's key log as this node holds it.
func (n *Node) KeyLog() *protocol.KeyLog { return n.gov.keyLog(n.self) }

// Signer is the key the node signs its records with now.
func (n *Node) Signer() peer.ID { return n.signer.Load().id }

// RotateKey makes a new key, puts it in force in the company's key log in
// place of the key the node signs with, and signs with it from then on. In
// each of the company's channels the old key signs up to the keys record
// that carries the change, which it signs itself.
func (n *Node) RotateKey(ctx context.Context, note string) (peer.ID, error) {
	next, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", err
	}
	nextID, err := peer.IDFromPrivateKey(next)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(n.cfg.Home, KeysDir)
	nextPath := filepath.Join(dir, nextKeyFile)
	err = n.changeKeys(ctx, func(heads map[cid.Cid]uint64, joined map[cid.Cid]bool) (protocol.KeyEvent, error) {
		// Written before anything is signed: a crash after the change
		// reached a channel finds it there at the next start.
		if err := writeKeyFile(nextPath, next); err != nil {
			return protocol.KeyEvent{}, fmt.Errorf("rotate: writing the new key: %w (is a rotation under way? see %s)", err, nextPath)
		}
		return protocol.KeyEvent{Op: protocol.KeyRotate, Key: nextID, From: keyPoints(heads, joined, 0, cid.Undef), Note: note}, nil
	}, func() error { return n.finishRotation() })
	if err != nil {
		return "", err
	}
	return nextID, nil
}

// finishRotation, once the company's key log puts keys/next.key in force,
// moves the key it replaced aside and signs with the new one; a next.key
// the log does not name (a rotation that reached no channel) is set aside
// unused.
func (n *Node) finishRotation() error {
	dir := filepath.Join(n.cfg.Home, KeysDir)
	nextPath := filepath.Join(dir, nextKeyFile)
	k, err := readKeyFile("the rotation's new key", nextPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sk, err := newSigningKey(k)
	if err != nil {
		return err
	}
	if st, ok := n.KeyLog().Key(sk.id); !ok || !st.InForce() {
		return os.Rename(nextPath, filepath.Join(dir, "unused-"+sk.id.String()+".key"))
	}
	cur := filepath.Join(dir, signingKeyFile)
	if _, err := os.Stat(cur); err == nil {
		// Moved aside, never overwritten, readable or not.
		name := "unreadable-" + strconv.FormatInt(time.Now().UnixNano(), 10) + ".key"
		if old, err := readKeyFile("signing key", cur); err == nil {
			if id, err := peer.IDFromPrivateKey(old); err == nil {
				name = id.String() + ".key"
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, "retired"), 0o700); err != nil {
			return err
		}
		if err := os.Rename(cur, filepath.Join(dir, "retired", name)); err != nil {
			return err
		}
		if err := syncDir(filepath.Join(dir, "retired")); err != nil {
			return err
		}
	}
	// identity.key stays: it names the company and its libp2p host.
	if err := os.Rename(nextPath, cur); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	n.signer.Store(sk)
	n.log.Info("signing with the new key", "key", sk.id)
	return nil
}

// AddDeviceKey makes a key for another server of the company, puts it in
// force in the key log, and writes it to keys/devices/ for the operator to
// carry there. It returns the key's ID and file.
func (n *Node) AddDeviceKey(ctx context.Context, note string) (peer.ID, string, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return "", "", err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(n.cfg.Home, KeysDir, "devices", id.String()+".key")
	err = n.changeKeys(ctx, func(map[cid.Cid]uint64, map[cid.Cid]bool) (protocol.KeyEvent, error) {
		if err := writeKeyFile(path, k); err != nil {
			return protocol.KeyEvent{}, err
		}
		return protocol.KeyEvent{Op: protocol.KeyAdd, Key: id, Note: note}, nil
	}, nil)
	if err != nil {
		return "", "", err
	}
	return id, path, nil
}

// RevokeKey takes key out of force: in each channel it signs nothing from
// fromSeq on (in ch only, when ch is given; 0 for from the next record).
// Records of the node's own chain it holds that key signed at or after that
// point are not revoked by mistake: the call refuses and says from where.
func (n *Node) RevokeKey(ctx context.Context, key peer.ID, fromSeq uint64, ch cid.Cid, note string) error {
	if key == n.Signer() {
		return badRequest{fmt.Errorf("revoke: this node signs with %s; rotate to a new key first (sangsaeng key rotate), then revoke it", key)}
	}
	if _, ok := n.KeyLog().Key(key); !ok {
		return badRequest{fmt.Errorf("revoke: %s is not one of the company's keys (sangsaeng key ls)", key)}
	}
	return n.changeKeys(ctx, func(heads map[cid.Cid]uint64, joined map[cid.Cid]bool) (protocol.KeyEvent, error) {
		// The keys record is signed by the node's key, not the revoked
		// one: the revoked key signs nothing from the next seq on.
		from := keyPoints(heads, nil, fromSeq, ch)
		for c, f := range from {
			recs, err := n.store.ByAuthor(c, n.self, f, heads[c])
			if err != nil {
				return protocol.KeyEvent{}, err
			}
			for _, r := range recs {
				if signer, err := protocol.SignerOf(r.Envelope); err == nil && signer == key {
					return protocol.KeyEvent{}, badRequest{fmt.Errorf("revoke: record %d of this node in channel %s (%s) is signed with %s; revoking from seq %d would refuse it: revoke from seq %d or later",
						r.Record.Seq, c, r.CID, key, f, heads[c]+1)}
				}
			}
		}
		return protocol.KeyEvent{Op: protocol.KeyRevoke, Key: key, From: from, Note: note}, nil
	}, nil)
}

// keyPoints is, per channel the company has records in or is a member of,
// the first seq a retired or revoked key no longer signs: the next seq, or
// in a channel of signedBy the one after (the keys record that carries the
// change, signed by the key it retires), or fromSeq where that is earlier
// (in ch only, when given).
func keyPoints(heads map[cid.Cid]uint64, signedBy map[cid.Cid]bool, fromSeq uint64, ch cid.Cid) map[cid.Cid]uint64 {
	out := map[cid.Cid]uint64{}
	for c, h := range heads {
		f := h + 1
		if signedBy[c] {
			f = h + 2
		}
		if fromSeq > 0 && (!ch.Defined() || ch == c) {
			f = min(f, fromSeq)
		}
		out[c] = f
	}
	return out
}

// changeKeys appends a key-event to the company's key log and publishes the
// log in every channel the node is in, with no other record of the node's
// in between (Publish waits). event builds the entry from the node's heads;
// after runs once the log is out.
func (n *Node) changeKeys(ctx context.Context, event func(heads map[cid.Cid]uint64, joined map[cid.Cid]bool) (protocol.KeyEvent, error), after func() error) error {
	if !n.started.Load() {
		return fmt.Errorf("keys: %w: the node is not started", errClosed)
	}
	// A partner confirms the node's heads before the lock, which Publish
	// waits for: the keys records publish at once under it.
	for _, c := range n.gov.joined() {
		if err := n.sync.confirmOwnHead(ctx, c); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
	}
	n.keyMu.Lock()
	defer n.keyMu.Unlock()
	joined := map[cid.Cid]bool{}
	for _, c := range n.gov.joined() {
		joined[c] = true
	}
	if len(joined) == 0 {
		return badRequest{errors.New("keys: the key log travels in the company's channels, and this node is in none; create or join a channel first")}
	}
	heads := map[cid.Cid]uint64{}
	for _, c := range n.gov.known() {
		h, err := n.store.Head(c, n.self)
		if err != nil {
			return err
		}
		if h > 0 || joined[c] {
			heads[c] = h
		}
	}
	ev, err := event(heads, joined)
	if err != nil {
		return err
	}
	log := n.KeyLog()
	sk := n.signer.Load()
	entry, err := protocol.SealWith(log.Next(ev, time.Now().UnixMilli()), sk.key)
	if err != nil {
		return err
	}
	envs := make([][]byte, 0, len(log.Entries)+1)
	for _, e := range log.Entries {
		envs = append(envs, e.Envelope)
	}
	envs = append(envs, entry.Envelope)
	next, err := protocol.OpenKeyLog(n.self, envs)
	if err != nil {
		return badRequest{fmt.Errorf("keys: %w", err)}
	}
	// Durable before anything counts on it: a change that reaches no
	// channel now is sent at the next start.
	if err := n.saveKeyLog(envs); err != nil {
		return fmt.Errorf("keys: storing the key log: %w", n.storeFailed(opPublish, err))
	}
	n.gov.learnKeyLog(next)
	spreadErr := n.spreadKeyLog(ctx)
	if after != nil {
		if err := after(); err != nil {
			return err
		}
	}
	n.log.Info("key log changed", "op", ev.Op, "key", ev.Key, "entries", len(next.Entries))
	return spreadErr
}

// The node's own key log, kept in the store's meta (namespace keys) as
// well as in the keys records it publishes: a change is durable before any
// channel has it.
const (
	keysMetaNS  = "keys"
	keysMetaLog = "log"
)

func (n *Node) saveKeyLog(envs [][]byte) error {
	l := make([]any, len(envs))
	for i, e := range envs {
		l[i] = e
	}
	b, err := protocol.EncodeValue(l)
	if err != nil {
		return err
	}
	return n.store.PutMeta(keysMetaNS, keysMetaLog, b)
}

// loadKeyLog reads the node's own key log from the store's meta.
func (n *Node) loadKeyLog() error {
	b, err := n.store.GetMeta(keysMetaNS, keysMetaLog)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l, err := decodeKeyLog(n.self, b)
	if err != nil {
		// The channels' keys records hold it too.
		n.log.Error("the key log in the store does not read; going on with the channels' keys records", "err", err)
		return nil
	}
	n.gov.learnKeyLog(l)
	return nil
}

// decodeKeyLog reads a key log saved by saveKeyLog.
func decodeKeyLog(self peer.ID, b []byte) (*protocol.KeyLog, error) {
	v, err := protocol.DecodeValue(b)
	if err != nil {
		return nil, err
	}
	items, _ := v.([]any)
	envs := make([][]byte, 0, len(items))
	for _, it := range items {
		e, _ := it.([]byte)
		envs = append(envs, e)
	}
	return protocol.OpenKeyLog(self, envs)
}

// spreadKeyLog publishes the company's key log in each channel the node is
// in whose newest keys record of the node's carries less of it: after a
// change, in a channel the node just founded or joined, and at start after
// a change that a crash cut short.
func (n *Node) spreadKeyLog(ctx context.Context) error {
	log := n.KeyLog()
	if len(log.Entries) == 0 {
		return nil
	}
	var errs []error
	for _, c := range n.gov.joined() {
		if n.gov.keysHeld(c, n.self) >= len(log.Entries) {
			continue
		}
		if _, err := n.publish(ctx, c, protocol.KindKeys, log.KeysBody(), nil); err != nil {
			errs = append(errs, fmt.Errorf("channel %s: %w", c, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the key log reached only some channels (it is sent again at the next start): %w", errors.Join(errs...))
	}
	return nil
}

// keysView is the API shape of the company's key log.
func (n *Node) keysView() *api.Keys {
	log := n.KeyLog()
	v := &api.Keys{Company: n.self.String(), Signer: n.Signer().String(), Entries: len(log.Entries), Keys: []api.KeyInfo{}}
	for _, k := range log.Keys() {
		info := api.KeyInfo{Key: k.Key.String(), State: "in force", Added: k.Added, At: k.At, Signing: k.Key == n.Signer()}
		switch k.Left {
		case protocol.KeyRotate:
			info.State, info.By = "rotated", k.By.String()
		case protocol.KeyRevoke:
			info.State = "revoked"
		}
		if !k.InForce() {
			info.From = map[string]uint64{}
			for c, s := range k.From {
				info.From[c.String()] = s
			}
		}
		v.Keys = append(v.Keys, info)
	}
	return v
}

func (n *Node) apiRotateKey(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.KeyChange
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	id, err := n.RotateKey(r.Context(), req.Note)
	if err != nil {
		return nil, err
	}
	return &api.KeyChanged{Key: id.String()}, nil
}

func (n *Node) apiAddDeviceKey(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.KeyChange
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	id, file, err := n.AddDeviceKey(r.Context(), req.Note)
	if err != nil {
		return nil, err
	}
	return &api.KeyChanged{Key: id.String(), File: file}, nil
}

func (n *Node) apiRevokeKey(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.KeyChange
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	key, err := parsePeer(req.Key)
	if err != nil {
		return nil, err
	}
	ch := cid.Undef
	if req.Channel != "" {
		if ch, err = n.resolveChannel(req.Channel); err != nil {
			return nil, err
		}
	}
	return nil, n.RevokeKey(r.Context(), key, req.FromSeq, ch, req.Note)
}

// keyNote says where the author's key log leaves the key that signed s.
func (n *Node) keyNote(s *protocol.Signed) string {
	log := n.gov.keyLog(s.Record.Author)
	k, ok := log.Key(s.Signer)
	switch {
	case !ok:
		return "not a key of the author's key log as this node holds it"
	case log.Check(s.Signer, s.ChannelOf(), s.Record.Seq) != nil:
		return fmt.Sprintf("out of force at this record (%s at key-log entry %d)", k.Left, k.At)
	case k.Left == protocol.KeyRotate:
		return fmt.Sprintf("rotated later (key-log entry %d, replaced by %s)", k.At, k.By)
	case k.Left == protocol.KeyRevoke:
		return fmt.Sprintf("revoked later (key-log entry %d)", k.At)
	}
	return "in force"
}
