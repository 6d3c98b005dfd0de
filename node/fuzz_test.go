package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// frames joins frames as the sync and join protocols write them.
func frames(fs ...[]byte) []byte {
	var b bytes.Buffer
	for _, f := range fs {
		_ = writeFrame(&b, f)
	}
	return b.Bytes()
}

// syncFixture is a node alone in a channel with a second member, whose
// valid records can make up a sync answer.
type syncFixture struct {
	n       *Node
	ch      cid.Cid
	member  crypto.PrivKey
	mid     peer.ID
	records []*protocol.Signed
	heads   []byte // the member's heads message for ch
}

func newSyncFixture(t testing.TB) *syncFixture {
	t.Helper()
	n := startNodeWith(t, "A", slog.LevelWarn, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := n.CreateChannel(ctx, "fuzz", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	k, id := newKey(t)
	addMember(t, n, ch, id)
	recs := chain(t, k, ch, 0, cid.Undef, 3, "from the member")
	hm, err := (&protocol.HeadsMessage{Channel: ch, Heads: protocol.Heads{id: 3}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &syncFixture{n: n, ch: ch, member: k, mid: id, records: recs, heads: hm}
}

// quiet closes the node's libp2p host, whose background work (heartbeats,
// identify, dials) would otherwise show the fuzzer coverage that no input
// caused, and slow it to a crawl. What a sync answer goes through (checks,
// store) does not need the host.
func (f *syncFixture) quiet(t testing.TB) {
	t.Helper()
	if err := f.n.host.Close(); err != nil {
		t.Fatal(err)
	}
}

// read feeds b to the node as the member's answer to a sync.
func (f *syncFixture) read(b []byte) (*syncStatus, error) {
	return f.n.readSyncAnswer(bufio.NewReader(bytes.NewReader(b)), f.mid, f.ch, map[peer.ID]uint64{}, func() {}, func() {})
}

// TestSyncAnswerBadInput: answers to a sync that are truncated, oversized,
// garbled or for another channel end the sync with an error that says what
// is wrong; the valid records before the damage are kept.
func TestSyncAnswerBadInput(t *testing.T) {
	f := newSyncFixture(t)
	env := func(i int) []byte { return f.records[i].Envelope }
	otherHeads, _ := (&protocol.HeadsMessage{Channel: protocol.Sum([]byte("another")), Heads: protocol.Heads{}}).Encode()
	huge := binary.AppendUvarint(nil, protocol.MaxEnvelopeSize+1)
	cases := []struct {
		name   string
		answer []byte
		says   string
		stored int // of the member's records, after
	}{
		{"nothing", nil, "no answer: EOF", 0},
		{"a refusal", frames([]byte("not a member of that channel")), "refused: not a member", 0},
		{"status only", frames(nil), "heads: EOF", 0},
		{"oversized status", huge, "frame too large", 0},
		{"garbage heads", frames(nil, []byte("garbage")), "bad heads message", 0},
		{"heads of another channel", frames(nil, otherHeads), "for channel", 0},
		{"varint overflow", append(frames(nil, f.heads), bytes.Repeat([]byte{0xff}, 11)...), "overflow", 0},
		{"oversized record frame", append(frames(nil, f.heads), huge...), "the limit is 263168", 0},
		{"truncated record", append(frames(nil, f.heads), frames(env(0))[:40]...), "after 0 records: unexpected EOF", 0},
		{"garbage record", frames(nil, f.heads, []byte("garbage"), nil), "fail the checks", 0},
		{"no end frame", frames(nil, f.heads, env(0)), "after 1 records: EOF", 1},
		{"cut after two records", append(frames(nil, f.heads, env(0), env(1)), frames(env(2))[:100]...), "records: unexpected EOF", 2},
		{"whole", frames(nil, f.heads, env(0), env(1), env(2), nil), "", 3},
	}
	for _, c := range cases {
		st, err := f.read(c.answer)
		switch {
		case c.says == "" && err != nil:
			t.Fatalf("%s: %v", c.name, err)
		case c.says != "" && (err == nil || !strings.Contains(err.Error(), c.says)):
			t.Fatalf("%s: error %v, want one that says %q", c.name, err, c.says)
		case err == nil && st.received == 0 && c.stored > 0 && !has(f.n, f.records[c.stored-1].CID):
			t.Fatalf("%s: nothing received", c.name)
		}
		got := 0
		for _, s := range f.records {
			if has(f.n, s.CID) {
				got++
			}
		}
		if got != c.stored {
			t.Fatalf("%s: %d of the member's records stored, want %d", c.name, got, c.stored)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// FuzzReadFrame: random bytes read as frames never panic, never give a
// frame beyond the limit, and the frames read, written again, read back
// the same.
func FuzzReadFrame(f *testing.F) {
	f.Add(frames([]byte("abc"), nil, []byte("x")))
	f.Add(binary.AppendUvarint(nil, 1<<40))
	f.Add(bytes.Repeat([]byte{0xff}, 12))
	f.Add([]byte{0x80, 0x00, 0x03, 'a', 'b', 'c'}) // a length in a longer form than needed
	f.Fuzz(func(t *testing.T, data []byte) {
		read := func(b []byte) [][]byte {
			r := bufio.NewReader(bytes.NewReader(b))
			var out [][]byte
			for {
				fr, err := readFrame(r, 1024)
				if err != nil {
					return out
				}
				if len(fr) > 1024 {
					t.Fatalf("a frame of %d bytes, limit 1024", len(fr))
				}
				out = append(out, fr)
			}
		}
		got := read(data)
		again := read(frames(got...))
		if len(again) != len(got) {
			t.Fatalf("%d frames, %d after writing them again", len(got), len(again))
		}
		for i := range got {
			if !bytes.Equal(got[i], again[i]) {
				t.Fatalf("frame %d changed through writeFrame", i)
			}
		}
	})
}

// FuzzSyncAnswer feeds random bytes to a real node as a partner's answer to
// its sync, through the same reading code the asker uses. The node never
// panics, and stores nothing that fails the checks.
func FuzzSyncAnswer(f *testing.F) {
	fx := newSyncFixture(f)
	fx.quiet(f)
	env := func(i int) []byte { return fx.records[i].Envelope }
	f.Add(frames(nil, fx.heads, env(0), env(1), env(2), nil))
	f.Add(frames(nil, fx.heads, env(2), env(0), nil))
	f.Add(frames([]byte("no")))
	f.Add(append(frames(nil, fx.heads, env(0)), 0xff, 0xff))
	tampered := bytes.Clone(env(1))
	tampered[len(tampered)/2] ^= 4
	f.Add(frames(nil, fx.heads, tampered, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := fx.read(data)
		// Every frame of the input that is now stored must be a record
		// that passes every check.
		r := bufio.NewReader(bytes.NewReader(data))
		for i := 0; ; i++ {
			b, ferr := readFrame(r, protocol.MaxEnvelopeSize)
			if ferr != nil {
				break
			}
			if i < 2 || len(b) == 0 {
				continue // status and heads
			}
			c, cerr := protocol.EnvelopeCID(b)
			if cerr != nil || !has(fx.n, c) {
				continue
			}
			stored, gerr := fx.n.store.Get(c)
			if gerr != nil {
				t.Fatal(gerr)
			}
			s, oerr := protocol.Open(stored.Envelope)
			if oerr != nil {
				t.Fatalf("stored a record that does not open: %v (sync error %v)", oerr, err)
			}
			if s.ChannelOf() != fx.ch {
				t.Fatalf("stored a record of channel %s from a sync of %s", s.ChannelOf(), fx.ch)
			}
		}
	})
}

// deadlineOnly is the part of a stream answerSync uses besides its writer.
type deadlineOnly struct{ network.Stream }

func (deadlineOnly) SetWriteDeadline(time.Time) error { return nil }

// FuzzSyncRequest feeds random bytes to a real node as a member's sync
// request, the way handleSync reads it: one frame, a heads message, and,
// for the member's channel, the answer. The node never panics, and its
// answer is well formed: an empty status, its heads for the channel, only
// records of that channel, and the end frame.
func FuzzSyncRequest(f *testing.F) {
	fx := newSyncFixture(f)
	fx.quiet(f)
	if err := fx.n.ingestAll(fx.ch, [][]byte{fx.records[0].Envelope, fx.records[1].Envelope, fx.records[2].Envelope}, fx.mid); err != nil {
		f.Fatal(err)
	}
	seed := func(hs protocol.Heads, tips map[peer.ID]cid.Cid) []byte {
		b, err := (&protocol.HeadsMessage{Channel: fx.ch, Heads: hs, Tips: tips}).Encode()
		if err != nil {
			f.Fatal(err)
		}
		return frames(b)
	}
	f.Add(seed(nil, nil))
	f.Add(seed(protocol.Heads{fx.mid: 1}, map[peer.ID]cid.Cid{fx.mid: fx.records[0].CID}))
	f.Add(seed(protocol.Heads{fx.mid: 2}, map[peer.ID]cid.Cid{fx.mid: fx.records[2].CID})) // a tip that is not the record there
	f.Add(seed(protocol.Heads{fx.mid: 1 << 62, fx.n.ID(): 7}, nil))
	f.Add(frames([]byte("garbage")))
	f.Add(binary.AppendUvarint(nil, maxHeadsFrame+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := readFrame(bufio.NewReader(bytes.NewReader(data)), maxHeadsFrame)
		if err != nil {
			return // handleSync resets the stream
		}
		req, err := protocol.DecodeHeadsMessage(raw)
		if err != nil || req.Channel != fx.ch {
			return // refused
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := fx.n.answerSync(w, deadlineOnly{}, "", fx.ch, req.Heads, req.Tips); err != nil {
			t.Fatalf("answer to %x: %v", raw, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(&out)
		if st, err := readFrame(r, 1024); err != nil || len(st) != 0 {
			t.Fatalf("status %q %v", st, err)
		}
		hb, err := readFrame(r, maxHeadsFrame)
		if err != nil {
			t.Fatal(err)
		}
		if hm, err := protocol.DecodeHeadsMessage(hb); err != nil || hm.Channel != fx.ch {
			t.Fatalf("heads in the answer: %v", err)
		}
		for {
			b, err := readFrame(r, protocol.MaxEnvelopeSize)
			if err != nil {
				t.Fatalf("the answer ends without its end frame: %v", err)
			}
			if len(b) == 0 {
				break
			}
			s, err := protocol.Open(b)
			if err != nil || s.ChannelOf() != fx.ch {
				t.Fatalf("the answer holds a record that does not open or is of another channel: %v", err)
			}
		}
		if r.Buffered() > 0 {
			t.Fatal("bytes after the end frame")
		}
	})
}

// apiFixture is a real node alone in a channel, serving its API in-process.
type apiFixture struct {
	n     *Node
	h     http.Handler
	token string
	ch    cid.Cid
}

func newAPIFixture(t testing.TB) *apiFixture {
	t.Helper()
	n := startNodeWith(t, "A", slog.LevelWarn, nil)
	ch, err := n.CreateChannel(context.Background(), "fuzz", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(n.cfg.Home, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &apiFixture{n: n, h: n.Handler(), token: strings.TrimSpace(string(tok)), ch: ch}
}

// call serves one request and checks the API's contract on bad input: no
// 5xx, and every error a JSON {code, message}.
func (a *apiFixture) call(t *testing.T, method, path string, body []byte) int {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Host = "127.0.0.1" // httptest's default, example.com, is refused
	req.Header.Set("Authorization", "Bearer "+a.token)
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: status %d: %s", method, path, body, rec.Code, rec.Body.Bytes())
	}
	if rec.Code >= 400 {
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s %s %q: status %d with a body that is no API error: %q", method, path, body, rec.Code, rec.Body.Bytes())
		}
	}
	return rec.Code
}

// apiSeeds are request bodies, good and bad, for the API fuzz targets.
var apiSeeds = []string{
	`{"kind": "note", "body": {"text": "안녕하세요"}}`,
	`{"kind": "order", "body": {"docId": "PO-1", "docVersion": 1, "issuedAt": "2026-11-23T09:00:00+09:00", "buyer": {"scheme": "vendor", "id": "OEM"}, "seller": {"scheme": "vendor", "id": "T1"}, "lines": [{"lineId": "1", "item": {"buyerPartNo": "58101-3X000"}, "quantity": {"value": "1200", "unit": "H87"}, "requestedDelivery": {"date": "2026-11-30"}}]}}`,
	`{"kind": "note", "body": {"text": "x"}, "links": [{"rel": "about", "cid": "bafyreidm6zp6i447dfkwbzn7uqwnztd33o3wdshvuska34r4f5s66knefe"}]}`,
	`{"kind": 5}`, `{"kind": "note", "body": [1]}`, `{"kind": "note", "body": {"text": 1e999}}`,
	`{"kind": "invoice", "body": {}}`, `{"body": {}}`, `{`, ``, `null`, `[]`, "{\"kind\": \"note\", \"body\": {\"text\": \"\xc7\xd1\"}}",
	`{"name": "x", "members": ["12D3KooWnope"]}`, `{"peer": "12D3KooWnope"}`, `{"code": "ssinv1.e30"}`,
	`{"id": "12D3KooWnope", "addrs": ["/ip4/127.0.0.1/tcp/1"]}`, `{"name": "회사", "brn": "1234567890"}`,
}

// FuzzAPIPublish posts random bytes as the body of a publish to one real
// node: never a 5xx, never a panic, every error a JSON API error.
func FuzzAPIPublish(f *testing.F) {
	a := newAPIFixture(f)
	for _, s := range apiSeeds {
		f.Add([]byte(s))
	}
	path := "/v1/channels/" + a.ch.String() + "/records"
	f.Fuzz(func(t *testing.T, body []byte) {
		a.call(t, http.MethodPost, path, body)
	})
}

// apiDecoders are the endpoints that decode a JSON or binary request body
// (publish has FuzzAPIPublish). Joining is left out: a valid invite code
// would make the node dial out for half a minute.
var apiDecoders = []struct{ method, path string }{
	{http.MethodPost, "/v1/channels"},
	{http.MethodPost, "/v1/channels/fuzz/invite"},
	{http.MethodPost, "/v1/channels/fuzz/remove-member"},
	{http.MethodPost, "/v1/partners"},
	{http.MethodPut, "/v1/profile"},
	{http.MethodPost, "/v1/verify"},
	{http.MethodPost, "/v1/join"},
}

// FuzzAPIDecode sends random bytes to every other endpoint that reads a
// request body, with the same contract as FuzzAPIPublish.
func FuzzAPIDecode(f *testing.F) {
	a := newAPIFixture(f)
	for i := range apiDecoders {
		for _, s := range apiSeeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		e := apiDecoders[int(which)%len(apiDecoders)]
		if e.path == "/v1/join" && bytes.Contains(body, []byte(invitePrefix)) {
			// A code that decodes names a peer to dial: bounded by the
			// request's context, which httptest does not end.
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req := httptest.NewRequestWithContext(ctx, e.method, e.path, bytes.NewReader(body))
			req.Host = "127.0.0.1"
			req.Header.Set("Authorization", "Bearer "+a.token)
			rec := httptest.NewRecorder()
			a.h.ServeHTTP(rec, req)
			if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("join %q: status %d: %s", body, rec.Code, rec.Body.Bytes())
			}
			return
		}
		a.call(t, e.method, e.path, body)
	})
}

// TestSyncRequestBadInput: a member opens sync and fetch streams to a node
// and sends requests that are empty, cut short, beyond the frame limit,
// garbled, or for a channel it is not in. Each gets a refusal that says what
// is wrong, or a reset stream; none panics the node, and the same member's
// good requests are answered afterwards.
func TestSyncRequestBadInput(t *testing.T) {
	n := startNodeWith(t, "A", slog.LevelWarn, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := n.CreateChannel(ctx, "requests", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.CreateChannel(ctx, "other", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	k, id := newKey(t)
	addMember(t, n, ch, id)
	rec, err := n.Publish(ctx, ch, "note", map[string]any{"text": "납기 확인"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := bareHost(t, k)
	if err := h.Connect(ctx, addrInfo(n)); err != nil {
		t.Fatal(err)
	}
	// ask sends raw on a new stream of proto and returns the frames of
	// the answer, or the error that ended it.
	ask := func(proto libp2pproto.ID, raw []byte) ([][]byte, error) {
		st, err := h.NewStream(ctx, n.ID(), proto)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := st.Write(raw); err != nil {
			return nil, err
		}
		_ = st.CloseWrite()
		r := bufio.NewReader(st)
		var out [][]byte
		for {
			f, err := readFrame(r, protocol.MaxEnvelopeSize)
			if errors.Is(err, io.EOF) && len(out) > 0 {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			out = append(out, f)
		}
	}
	heads := func(c cid.Cid, hs protocol.Heads) []byte {
		b, err := (&protocol.HeadsMessage{Channel: c, Heads: hs}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name  string
		proto libp2pproto.ID
		raw   []byte
		says  string // the refusal; "" for a reset stream
	}{
		{"sync: nothing", SyncID, nil, ""},
		{"sync: a length cut short", SyncID, []byte{0x80}, ""},
		{"sync: a length beyond the limit", SyncID, binary.AppendUvarint(nil, maxHeadsFrame+1), ""},
		{"sync: a length of 2^63", SyncID, binary.AppendUvarint(nil, 1<<63), ""},
		{"sync: a frame cut short", SyncID, frames(heads(ch, nil))[:20], ""},
		{"sync: garbage heads", SyncID, frames([]byte("garbage")), "bad heads message"},
		{"sync: an empty frame", SyncID, frames(nil), "bad heads message"},
		{"sync: a channel it is not in", SyncID, frames(heads(other, nil)), "not a member of that channel"},
		{"sync: a channel that does not exist", SyncID, frames(heads(protocol.Sum([]byte("nowhere")), nil)), "not a member of that channel"},
		{"fetch: nothing", FetchID, nil, ""},
		{"fetch: a frame beyond the limit", FetchID, binary.AppendUvarint(nil, 129), ""},
		{"fetch: a frame cut short", FetchID, frames(rec.CID.Bytes())[:10], ""},
		{"fetch: garbage", FetchID, frames([]byte("garbage")), "bad CID"},
		{"fetch: a CID not held", FetchID, frames(protocol.Sum([]byte("nothing")).Bytes()), "not found"},
	} {
		got, err := ask(c.proto, c.raw)
		switch {
		case c.says == "" && err == nil:
			t.Fatalf("%s: answered %q, want a reset", c.name, got)
		case c.says != "" && (len(got) == 0 || !strings.Contains(string(got[0]), c.says)):
			t.Fatalf("%s: answered %q (%v), want a refusal that says %q", c.name, got, err, c.says)
		}
		if c.says != "" {
			t.Logf("%s: refused: %s", c.name, got[0])
		} else {
			t.Logf("%s: reset: %v", c.name, err)
		}
	}
	// The node still answers the member.
	got, err := ask(SyncID, frames(heads(ch, nil)))
	if err != nil || len(got) < 3 || len(got[0]) != 0 {
		t.Fatalf("a good sync request after the bad ones: %d frames, %v", len(got), err)
	}
	found := false
	for _, f := range got[2:] {
		found = found || bytes.Equal(f, rec.Envelope)
	}
	if !found {
		t.Fatal("the good sync answer lacks the record")
	}
	got, err = ask(FetchID, frames(rec.CID.Bytes()))
	if err != nil || len(got) != 2 || len(got[0]) != 0 || !bytes.Equal(got[1], rec.Envelope) {
		t.Fatalf("a good fetch after the bad ones: %q %v", got, err)
	}
}
