package evidence

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

type signer struct {
	key  crypto.PrivKey
	id   peer.ID
	seq  map[cid.Cid]uint64
	prev map[cid.Cid]cid.Cid
}

func newSigner(t testing.TB) *signer {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return &signer{key: k, id: id, seq: map[cid.Cid]uint64{}, prev: map[cid.Cid]cid.Cid{}}
}

func (s *signer) sign(t testing.TB, ch cid.Cid, kind string, body map[string]any) *protocol.Signed {
	t.Helper()
	s.seq[ch]++
	r := &protocol.Record{Channel: ch, Author: s.id, Seq: s.seq[ch], Prev: s.prev[ch], Time: 1764000000000 + int64(s.seq[ch]), Kind: kind, Body: body}
	out, err := protocol.Seal(r, s.key)
	if err != nil {
		t.Fatal(err)
	}
	s.prev[ch] = out.CID
	return out
}

// genesis founds a channel of a with members.
func genesis(t testing.TB, a *signer, members ...*signer) *protocol.Signed {
	t.Helper()
	ms := []any{}
	for _, m := range members {
		ms = append(ms, m.id.String())
	}
	r := &protocol.Record{Author: a.id, Seq: 1, Time: 1764000000000, Kind: protocol.KindChannelGenesis,
		Body: map[string]any{"name": "x", "admins": []any{a.id.String()}, "members": ms}}
	g, err := protocol.Seal(r, a.key)
	if err != nil {
		t.Fatal(err)
	}
	a.seq[g.CID], a.prev[g.CID] = 1, g.CID
	return g
}

type fixture struct {
	recs []*protocol.Signed
	car  []byte
}

func newFixture(t testing.TB) fixture {
	a, b := newSigner(t), newSigner(t)
	g := genesis(t, a, b)
	ch := g.CID
	n1 := a.sign(t, ch, "note", map[string]any{"text": "출하 DN-1"})
	n2 := b.sign(t, ch, "note", map[string]any{"text": "입고 GR-1"})
	n3 := b.sign(t, ch, "note", map[string]any{"text": "검사 QI-1"})
	recs := []*protocol.Signed{g, n1, n2, n3}
	bl := NewBuilder()
	bl.Add(g, false)
	for _, r := range recs[1:] {
		bl.Add(r, true)
	}
	bl.Add(n1, false) // a second add keeps one, selected
	env := map[cid.Cid][]byte{}
	for _, r := range recs {
		env[r.CID] = r.Envelope
	}
	var buf bytes.Buffer
	if err := bl.Write(&buf, time.UnixMilli(1764000001000), func(c cid.Cid) ([]byte, error) { return env[c], nil }); err != nil {
		t.Fatal(err)
	}
	return fixture{recs: recs, car: buf.Bytes()}
}

// TestBundleVerifies: a bundle of three records and their channel's
// genesis checks out offline, selected records marked.
func TestBundleVerifies(t *testing.T) {
	f := newFixture(t)
	rep, err := Verify(bytes.NewReader(f.car))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blocks != 5 || len(rep.Records) != 4 || rep.Selected != 3 || len(rep.Channels) != 1 {
		t.Fatalf("report %+v", rep)
	}
}

// TestBundleFlippedBit: flipping any one bit anywhere in the bundle makes
// Verify fail, and the error says where.
func TestBundleFlippedBit(t *testing.T) {
	f := newFixture(t)
	for i := range f.car {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(f.car)
			bad[i] ^= bit
			if _, err := Verify(bytes.NewReader(bad)); err == nil {
				t.Fatalf("a bundle with byte %d flipped (%#x) verifies", i, bit)
			}
		}
	}
	// The message names the block.
	bad := bytes.Clone(f.car)
	bad[len(bad)-10] ^= 1 // inside the last envelope
	_, err := Verify(bytes.NewReader(bad))
	if err == nil || !strings.Contains(err.Error(), "at byte") || !strings.Contains(err.Error(), "do not hash to its CID") {
		t.Fatalf("flipped envelope: %v", err)
	}
}

// TestBundleRefusals: an author outside the channel, a missing genesis,
// two records for one seq, a cut file.
func TestBundleRefusals(t *testing.T) {
	a, b, c := newSigner(t), newSigner(t), newSigner(t)
	g := genesis(t, a, b)
	outsider := c.sign(t, g.CID, "note", map[string]any{"text": "not a member"})
	b1 := b.sign(t, g.CID, "note", map[string]any{"text": "one"})
	b.seq[g.CID], b.prev[g.CID] = 0, cid.Undef
	b1again := b.sign(t, g.CID, "note", map[string]any{"text": "one, again"})
	write := func(recs ...*protocol.Signed) []byte {
		bl := NewBuilder()
		env := map[cid.Cid][]byte{}
		for _, r := range recs {
			bl.Add(r, true)
			env[r.CID] = r.Envelope
		}
		var buf bytes.Buffer
		if err := bl.Write(&buf, time.Now(), func(c cid.Cid) ([]byte, error) { return env[c], nil }); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for name, c := range map[string]struct {
		car  []byte
		want string
	}{
		"outsider":   {write(g, outsider), "is not a member of channel"},
		"no genesis": {write(b1), "whose genesis is not in the bundle"},
		"fork":       {write(g, b1, b1again), "both seq 1"},
		"cut":        {write(g, b1)[:100], "cut short"},
		"not a CAR":  {[]byte("{\"not\": \"a car\"}"), "not a CAR file"},
	} {
		if _, err := Verify(bytes.NewReader(c.car)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestCARWithGoCar: go-car/v2, an independent reader, reads our bundle
// block by block with its own hash checks; and a bundle that go-car/v2
// writes verifies here.
func TestCARWithGoCar(t *testing.T) {
	f := newFixture(t)
	br, err := carv2.NewBlockReader(bytes.NewReader(f.car))
	if err != nil {
		t.Fatal(err)
	}
	if br.Version != 1 || len(br.Roots) != 1 {
		t.Fatalf("go-car reads version %d with %d roots", br.Version, len(br.Roots))
	}
	var blocks []struct {
		c    cid.Cid
		data []byte
	}
	for {
		b, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go-car: %v", err)
		}
		blocks = append(blocks, struct {
			c    cid.Cid
			data []byte
		}{b.Cid(), b.RawData()})
	}
	if len(blocks) != 5 || !blocks[0].c.Equals(br.Roots[0]) {
		t.Fatalf("go-car read %d blocks", len(blocks))
	}
	var buf bytes.Buffer
	w, err := storage.NewWritable(&buf, br.Roots, carv2.WriteAsCarV1(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := w.Put(context.Background(), b.c.KeyString(), b.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("a bundle go-car wrote: %v", err)
	}
}

// FuzzVerify: whatever a file holds, Verify never panics.
func FuzzVerify(f *testing.F) {
	f.Add(newFixture(f).car)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xa1})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Verify(bytes.NewReader(data))
	})
}

// signLinked signs s's next record in ch with links.
func (s *signer) signLinked(t testing.TB, ch cid.Cid, kind string, body map[string]any, links ...protocol.Link) *protocol.Signed {
	t.Helper()
	s.seq[ch]++
	r := &protocol.Record{Channel: ch, Author: s.id, Seq: s.seq[ch], Prev: s.prev[ch], Time: 1764000000000 + int64(s.seq[ch]), Kind: kind, Body: body, Links: links}
	out, err := protocol.Seal(r, s.key)
	if err != nil {
		t.Fatal(err)
	}
	s.prev[ch] = out.CID
	return out
}

func bundleOf(t *testing.T, recs ...*protocol.Signed) []byte {
	t.Helper()
	bl := NewBuilder()
	env := map[cid.Cid][]byte{}
	for _, r := range recs {
		bl.Add(r, true)
		env[r.CID] = r.Envelope
	}
	var buf bytes.Buffer
	if err := bl.Write(&buf, time.Now(), func(c cid.Cid) ([]byte, error) { return env[c], nil }); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBundleGovernanceHoles: a bundle cannot undo a removal by leaving
// out the change it follows, a change by someone who is not an admin
// does not pass as checked, and a root that lists one record twice is
// refused.
func TestBundleGovernanceHoles(t *testing.T) {
	a, m, x := newSigner(t), newSigner(t), newSigner(t)
	g := genesis(t, a)
	ch := g.CID
	after := func(c cid.Cid) protocol.Link { return protocol.Link{Rel: protocol.RelAfter, CID: c} }
	add := a.signLinked(t, ch, protocol.KindChannelMembers, map[string]any{"add": []any{m.id.String()}}, after(g.CID))
	note := m.sign(t, ch, "note", map[string]any{"text": "before the removal"})
	remove := a.signLinked(t, ch, protocol.KindChannelMembers, map[string]any{"remove": []any{map[string]any{"member": m.id.String(), "lastSeq": int64(0)}}}, after(add.CID))
	if _, err := Verify(bytes.NewReader(bundleOf(t, g, add, remove, note))); err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Fatalf("the whole governance: %v, want m's note refused as after its removal", err)
	}
	// Without the change the removal follows, the removal would count
	// for nothing: the bundle is refused as incomplete instead.
	if _, err := Verify(bytes.NewReader(bundleOf(t, g, remove, note))); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("removal without its predecessor: %v", err)
	}
	// A stranger's change, selected, does not pass.
	stranger := x.signLinked(t, ch, protocol.KindChannelMembers, map[string]any{"add": []any{x.id.String()}}, after(g.CID))
	if _, err := Verify(bytes.NewReader(bundleOf(t, g, stranger))); err == nil || !strings.Contains(err.Error(), "not an admin") {
		t.Fatalf("a stranger's change: %v", err)
	}
	// (A record of seq 2 or more without prev does not seal: protocol
	// refuses it before the bundle's chain check would.)
	b := newSigner(t)
	g2 := genesis(t, a, b)
	// A root that lists one record twice.
	one := b.sign(t, g2.CID, "note", map[string]any{"text": "once"})
	ent := map[string]any{"record": one.CID, "envelope": rawCID(one.Envelope)}
	root, err := protocol.EncodeValue(map[string]any{"type": rootType, "version": int64(1), "created": int64(0), "selected": []any{}, "entries": []any{ent, ent}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	cw, err := newCARWriter(&buf, protocol.Sum(root))
	if err != nil {
		t.Fatal(err)
	}
	cw.put(protocol.Sum(root), root)
	cw.put(rawCID(one.Envelope), one.Envelope)
	if _, err := Verify(bytes.NewReader(buf.Bytes())); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("a record listed twice: %v", err)
	}
}
