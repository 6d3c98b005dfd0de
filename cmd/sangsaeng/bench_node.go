package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// benchNodeChild is `sangsaeng bench node-child`: a real node in --home
// (created on loopback with mDNS off when the home is empty), driven by the
// bench over stdin and stdout. It is not meant to be run by hand.
func benchNodeChild(ctx context.Context, env *Env, args []string) error {
	f := env.flags("bench "+benchNodeWord+" --home DIR [--cpuprofile FILE] [--ephemeral]",
		"A node process of `sangsaeng bench`, driven over stdin and stdout; not for use by hand.")
	cpuprofile := f.String("cpuprofile", "", "write a CPU profile of the process to `FILE`")
	ephemeral := f.Bool("ephemeral", false, "when stdin ends without an exit request (the bench is gone), remove the home, and its parent directory when that is left empty")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	if env.Home == "" {
		return f.usageErrorf("--home is required")
	}
	setMemoryLimit() // as the daemon does
	// Ctrl-C reaches the whole process group; the bench stops its children
	// itself, in order, so that their homes can be removed. When the bench
	// is gone, writes to stdout fail rather than kill the process, which
	// then cleans up.
	signal.Ignore(os.Interrupt, syscall.SIGPIPE)

	home := env.Home
	var cfg *node.Config
	_, err = os.Stat(filepath.Join(home, node.IdentityFile))
	fresh := err != nil
	if !fresh {
		cfg, err = node.LoadConfig(home)
		if err != nil {
			return err
		}
	} else {
		cfg, err = node.Init(home, node.InitOptions{
			Name:   "bench-" + filepath.Base(home),
			Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			API:    "127.0.0.1:0",
		})
		if err != nil {
			return err
		}
		cfg.MDNS = false
	}
	key, err := cfg.Identity()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if env.LogLevel != "" {
		_ = level.UnmarshalText([]byte(env.LogLevel)) // checked by the flag
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
	opened := time.Now()
	n, err := node.New(cfg, node.WithoutNATPortMap(), node.WithLogger(log))
	if err != nil {
		return err
	}
	openedIn := time.Since(opened)
	if fresh {
		// Keep the port the system chose, so that partners find the node
		// at its address after a restart, as they would a daemon's.
		cfg.Listen = nil
		for _, a := range n.Host().Addrs() {
			cfg.Listen = append(cfg.Listen, a.String())
		}
		if err := cfg.Save(); err != nil {
			n.Close()
			return err
		}
	}
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			n.Close()
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			n.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			pf.Close()
		}()
	}

	b := &benchNode{n: n, key: key, home: home}
	// First and Last bracket node.New: the store opened and the node's
	// state read from it.
	hello := benchMsg{Peer: n.ID().String(), First: opened.UnixNano(), Last: opened.Add(openedIn).UnixNano()}
	for _, a := range n.Host().Addrs() {
		hello.Addrs = append(hello.Addrs, a.String()+"/p2p/"+n.ID().String())
	}
	exit, conn := serveBench(ctx, env.Stdin, env.Stdout, hello, b.handle)
	err = n.Close()
	if exit == nil && *ephemeral {
		_ = os.RemoveAll(home)
		_ = os.Remove(filepath.Dir(home))
	}
	conn.ack(exit, err)
	return err
}

// benchLoadBatch is how many records the loader signs together by default:
// as many as the node's publisher signs together in a burst.
const benchLoadBatch = node.MaxPublishBatch

// benchNode is the node of a node child and what it was asked to watch.
type benchNode struct {
	n    *node.Node
	key  crypto.PrivKey
	home string
	arms arms

	loadMu sync.Mutex
}

// handle runs one request of the bench.
func (b *benchNode) handle(ctx context.Context, m benchMsg) benchMsg {
	var ch cid.Cid
	if m.Channel != "" {
		var err error
		if ch, err = cid.Decode(m.Channel); err != nil {
			return benchFail(fmt.Errorf("channel %q: %w", m.Channel, err))
		}
	}
	switch m.Op {
	case "start":
		r := benchMsg{First: time.Now().UnixNano()}
		if err := b.n.Start(); err != nil {
			return benchFail(err)
		}
		return r
	case "create":
		var members []peer.ID
		for _, s := range m.Peers {
			p, err := peer.Decode(s)
			if err != nil {
				return benchFail(err)
			}
			members = append(members, p)
		}
		c, err := b.n.CreateChannel(ctx, m.Name, "sangsaeng bench", members)
		if err != nil {
			return benchFail(err)
		}
		return benchMsg{Channel: c.String()}
	case "invite":
		p, err := peer.Decode(m.Peer)
		if err != nil {
			return benchFail(err)
		}
		code, err := b.n.Invite(ctx, ch, p)
		if err != nil {
			return benchFail(err)
		}
		return benchMsg{Code: code}
	case "join":
		c, err := b.n.Join(ctx, m.Code)
		if err != nil {
			return benchFail(err)
		}
		return benchMsg{Channel: c.String()}
	case "head":
		author, err := b.author(m.Peer)
		if err != nil {
			return benchFail(err)
		}
		h, err := b.n.Store().Head(ch, author)
		if err != nil {
			return benchFail(err)
		}
		return benchMsg{Head: h, Count: int(b.n.Store().Count())}
	case "publish":
		size := b.textSize(ch, m.Payload)
		return publishLoad(ctx, m.Count, m.Workers, m.Rate, func(ctx context.Context, i int) error {
			body := map[string]any{"text": benchText(m.Tag, i, size)}
			_, err := b.n.Publish(ctx, ch, protocol.KindNote, body, nil)
			return err
		})
	case "load":
		return b.load(ctx, ch, m.Count, m.Payload, max(1, m.Batch))
	case "arm-head":
		author, err := b.author(m.Peer)
		if err != nil {
			return benchFail(err)
		}
		w, err := b.headWatch(ch, author, m.Head)
		if err != nil {
			return benchFail(err)
		}
		idle, timeout := millis(m.IdleMs, 0), millis(m.TimeoutMs, 10*time.Minute)
		return benchMsg{Handle: b.arms.arm(ctx, func(ctx context.Context) benchMsg { return w.wait(ctx, idle, timeout) })}
	case "arm-latency":
		records, stop := b.n.Watch(ch)
		t := newTally(m, m.MaxMs == 0)
		go func() {
			for s := range records {
				if s.Record.Kind != protocol.KindNote {
					continue
				}
				text, _ := s.Record.Body["text"].(string)
				if sent, tag, ok := parseBenchText(text); ok && tag == t.tag {
					t.add(sent)
				}
			}
		}()
		idle, timeout := millis(m.IdleMs, 0), millis(m.TimeoutMs, 10*time.Minute)
		return benchMsg{Handle: b.arms.arm(ctx, func(ctx context.Context) benchMsg {
			defer stop()
			return t.wait(ctx, idle, timeout)
		})}
	case "await":
		return b.arms.await(ctx, m.Handle)
	case "metrics":
		return b.metrics()
	}
	return benchMsg{Error: fmt.Sprintf("unknown request %q", m.Op)}
}

// metrics reads the node's sangsaeng_* counters from its /metrics handler.
func (b *benchNode) metrics() benchMsg {
	tok, err := os.ReadFile(filepath.Join(b.home, api.TokenFile))
	if err != nil {
		return benchMsg{Error: err.Error()}
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Host = "127.0.0.1"
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	rec := httptest.NewRecorder()
	b.n.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return benchMsg{Error: fmt.Sprintf("/metrics: status %d", rec.Code)}
	}
	out := map[string]float64{}
	for line := range strings.Lines(rec.Body.String()) {
		if !strings.HasPrefix(line, "sangsaeng_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64); err == nil {
			out[line[:i]] = v
		}
	}
	return benchMsg{Metrics: out}
}

// author returns the peer named in a request, or the node itself.
func (b *benchNode) author(s string) (peer.ID, error) {
	if s == "" {
		return b.n.ID(), nil
	}
	return peer.Decode(s)
}

// textSize returns the length of note text that makes a record of about
// payload bytes (its DAG-CBOR encoding, the envelope's payload) in ch.
func (b *benchNode) textSize(ch cid.Cid, payload int) int {
	r := &protocol.Record{
		Channel: ch, Author: b.n.ID(), Seq: 1 << 20, Prev: ch, Time: time.Now().UnixMilli(),
		Kind: protocol.KindNote, Body: map[string]any{"text": ""},
	}
	enc, err := r.Encode()
	if err != nil {
		return max(payload, 1)
	}
	return max(payload-len(enc), 1)
}

// headWatch is a watch for an author's head in a channel to reach a target
// in the node's store. It polls the store's record count, which costs
// nothing, every millisecond, and reads the head only when the count says
// it may have been reached.
type headWatch struct {
	b        *benchNode
	ch       cid.Cid
	author   peer.ID
	target   uint64
	base     int64
	baseHead uint64
}

// headWatch arms a watch for author's head in ch to reach target.
func (b *benchNode) headWatch(ch cid.Cid, author peer.ID, target uint64) (*headWatch, error) {
	h, err := b.n.Store().Head(ch, author)
	if err != nil {
		return nil, err
	}
	return &headWatch{b: b, ch: ch, author: author, target: target, base: b.n.Store().Count(), baseHead: h}, nil
}

// wait replies with the records stored since the watch was armed (Count),
// when the first and last of them were seen (First, Last), the head reached
// and whether it is the target (Done). It gives up after idle without a new
// record (once one came) or timeout.
func (w *headWatch) wait(ctx context.Context, idle, timeout time.Duration) benchMsg {
	st := w.b.n.Store()
	need := int64(0)
	if w.target > w.baseHead {
		need = int64(w.target - w.baseHead)
	}
	r := benchMsg{Head: w.baseHead}
	if need == 0 {
		r.Done = true
		return r
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	seen := w.base
	for {
		select {
		case <-ctx.Done():
			r.Error = ctx.Err().Error()
			return r
		case <-tick.C:
		}
		now := time.Now()
		if c := st.Count(); c != seen || c-w.base >= need {
			if c != seen {
				seen = c
				if r.First == 0 {
					r.First = now.UnixNano()
				}
				r.Last = now.UnixNano()
				r.Count = int(c - w.base)
			}
			if c-w.base >= need {
				h, err := st.Head(w.ch, w.author)
				if err != nil {
					r.Error = err.Error()
					return r
				}
				r.Head = h
				if h >= w.target {
					r.Done = true
					return r
				}
			}
		}
		if now.After(deadline) || (idle > 0 && r.Last != 0 && now.Sub(time.Unix(0, r.Last)) > idle) {
			if h, err := st.Head(w.ch, w.author); err == nil {
				r.Head = h
			}
			return r
		}
	}
}

// load writes count records of the node's own into ch at once, as Publish
// would but without gossip: records are encoded in chain order, sealed on
// every core, and stored in batches. It is how the bench puts records in
// place for a member to catch up on; it goes through the node's exported
// store, so the node must not publish in ch meanwhile.
func (b *benchNode) load(ctx context.Context, ch cid.Cid, count, payload, batch int) benchMsg {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	start := time.Now()
	st := b.n.Store()
	self := b.n.ID()
	head, err := st.Head(ch, self)
	if err != nil {
		return benchFail(err)
	}
	prev := cid.Undef
	if head > 0 {
		recs, err := st.ByAuthor(ch, self, head, head)
		if err != nil || len(recs) == 0 {
			return benchFail(fmt.Errorf("own head %d in %s: %v", head, ch, err))
		}
		prev = recs[0].CID
	}
	if more, err := st.ByAuthor(ch, self, head+1, 0); err != nil || len(more) > 0 {
		return benchFail(fmt.Errorf("own records beyond the head in %s: the chain has a gap (%v)", ch, err))
	}
	size := b.textSize(ch, payload)
	// Records are signed as the publisher signs them: batch records
	// under one signature (protocol.SealBatch), or each on its own when
	// batch is 1, as records published one at a time are.
	chunk := 4096 / batch * batch
	for done := 0; done < count; {
		if ctx.Err() != nil {
			return benchFail(ctx.Err())
		}
		k := min(chunk, count-done)
		recs := make([]*protocol.Record, k)
		encoded := make([][]byte, k)
		for j := range recs {
			r := &protocol.Record{
				Channel: ch, Author: self, Seq: head + 1, Prev: prev, Time: time.Now().UnixMilli(),
				Kind: protocol.KindNote, Body: map[string]any{"text": benchText("c", done+j, size)},
			}
			enc, err := r.Encode()
			if err != nil {
				return benchFail(err)
			}
			recs[j], encoded[j] = r, enc
			head, prev = head+1, protocol.Sum(enc)
		}
		signed := make([]*protocol.Signed, k)
		groups := (k + batch - 1) / batch
		errs := make([]error, groups)
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for g := w; g < groups; g += workers {
					lo, hi := g*batch, min((g+1)*batch, k)
					var out []*protocol.Signed
					if hi-lo == 1 {
						var s *protocol.Signed
						if s, errs[g] = protocol.Seal(recs[lo], b.key); errs[g] == nil {
							out = []*protocol.Signed{s}
						}
					} else {
						out, errs[g] = protocol.SealBatchEncoded(recs[lo:hi], encoded[lo:hi], b.key)
					}
					copy(signed[lo:hi], out)
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return benchFail(err)
		}
		res, err := st.PutBatch(signed)
		if err != nil {
			return benchFail(err)
		}
		for j, r := range res {
			if r != store.Stored {
				return benchFail(fmt.Errorf("record %d of %s: %s", signed[j].Record.Seq, ch, r))
			}
		}
		done += k
	}
	return benchMsg{First: start.UnixNano(), Last: time.Now().UnixNano(), Head: head, Count: count}
}
