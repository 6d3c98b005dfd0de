package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pproto "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sangsaeng/sangsaeng/node"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// startDaemonWith is startDaemon with more arguments to init.
func startDaemonWith(t *testing.T, bin, name string, initArgs ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, bin: bin, home: t.TempDir(), name: name}
	d.mustRun(append([]string{"init", "--name", name, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0"}, initArgs...)...)
	d.start()
	t.Cleanup(func() { d.stop() })
	var id api.ID
	d.mustJSON(&id, "id")
	d.id = id.ID
	return d
}

// restartStopped starts a stopped daemon again.
func (d *daemon) restartStopped() {
	d.t.Helper()
	d.cmd = nil
	d.start()
}

// writeKey writes 32 random bytes to path.
func writeKey(t *testing.T, path string) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// grepDir counts the files under dir that contain s.
func grepDir(t *testing.T, dir string, s []byte) (hits []string, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, s) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, files
}

// TestEncryptionAtRest: a node initialised with --encryption-key-file keeps
// no record text in plain anywhere under data/ (a node without a key, as the
// control, does); with a wrong key the daemon refuses to start and says the
// key is wrong; with the right key again every record is there.
func TestEncryptionAtRest(t *testing.T) {
	bin := buildBinary(t)
	keyFile := filepath.Join(t.TempDir(), "store.key")
	key := writeKey(t, keyFile)
	enc := startDaemonWith(t, bin, "암호화", "--encryption-key-file", keyFile)
	plain := startDaemon(t, bin, "평문")
	const secret = "BRAKE-PAD-UNIT-PRICE-7Q2X"
	korean := "기밀 납품단가"
	cids := map[*daemon][]string{}
	for _, d := range []*daemon{enc, plain} {
		var ch api.Channel
		d.mustJSON(&ch, "channel", "create", "secrets")
		c := d.client()
		for i := range 20 {
			body, _ := json.Marshal(map[string]any{"text": fmt.Sprintf("%s %s %d원", secret, korean, 4321+i)})
			p, err := c.Publish(context.Background(), ch.ID, api.Publish{Kind: "note", Body: body})
			if err != nil {
				t.Fatal(err)
			}
			cids[d] = append(cids[d], p.CID)
		}
		d.stop()
	}
	for _, s := range []string{secret, korean} {
		hits, files := grepDir(t, filepath.Join(enc.home, "data"), []byte(s))
		if len(hits) > 0 {
			t.Fatalf("%q in plain in %v", s, hits)
		}
		control, _ := grepDir(t, filepath.Join(plain.home, "data"), []byte(s))
		if len(control) == 0 {
			t.Fatalf("the control node without a key shows no %q either: the test proves nothing", s)
		}
		t.Logf("%q: found in %d file(s) of the plain node, in 0 of the %d files of the encrypted node", s, len(control), files)
	}

	// A wrong key: the daemon stops and says so.
	writeKey(t, keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "daemon", "--home", enc.home).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("the daemon with a wrong key: %v\n%s", err, out)
	}
	msg := strings.ToLower(string(out))
	if !strings.Contains(msg, "key") || !strings.Contains(msg, "wrong") || !strings.Contains(string(out), keyFile) {
		t.Fatalf("the daemon's message does not say the key in %s is wrong:\n%s", keyFile, out)
	}
	t.Logf("wrong key: exit %d: %s", ee.ExitCode(), lastLine(string(out)))

	// The right key: every record.
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	enc.restartStopped()
	for _, c := range cids[enc] {
		r, err := enc.client().Get(context.Background(), c)
		if err != nil || !strings.Contains(string(r.Body), secret) || !strings.Contains(string(r.Body), korean) {
			t.Fatalf("record %s with the right key: %v", c, err)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestKillDuringIngest: a member that was offline catches up on thousands
// of an author's records by sync and is killed with SIGKILL again and again
// while it does. After every kill its store opens and it still holds every
// record it had reported holding; in the end its chain of the author is
// the author's, every record verifies from the genesis on, and there is no
// fork evidence.
func TestKillDuringIngest(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "ab")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "ab", b.id)
	b.mustRun("channel", "join", inv.Code)
	var before api.Channel
	b.mustJSON(&before, "channel", "show", "ab")
	b.stop()

	// A publishes while B is down.
	ac := a.client()
	published := 0
	publish := func(records int) uint64 {
		t.Helper()
		pubAt := time.Now()
		var wg sync.WaitGroup
		errc := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < records; i += 16 {
					body := fmt.Sprintf(`{"text": "lot %d passed inspection"}`, published+i)
					if _, err := ac.Publish(context.Background(), ch.ID, api.Publish{Kind: "note", Body: json.RawMessage(body)}); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		published += records
		aShow, err := ac.Channel(context.Background(), ch.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("A published %d records in %s; its head is %d", records, time.Since(pubAt).Round(time.Millisecond), aShow.Heads[a.id])
		return aShow.Heads[a.id]
	}
	want := publish(8000)

	// B comes back and is killed while it catches up.
	acked := before.Heads[a.id] // the highest head of A's chain B reported holding
	kills, during := 0, 0
	for kills < 12 && during < 10 {
		start := time.Now()
		b.log = &bytes.Buffer{}
		b.cmd = exec.Command(b.bin, "daemon", "--home", b.home, "--log-level", "info")
		b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
		_ = os.Remove(filepath.Join(b.home, api.AddrFile)) // the killed daemon's
		if err := b.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The store opened and the API answers; watch the head grow.
		var c *api.Client
		var head uint64
		opened := false
		for time.Since(start) < 30*time.Second {
			if c == nil {
				if _, err := os.Stat(filepath.Join(b.home, api.AddrFile)); err == nil {
					c, _ = api.FromHome(b.home, "")
				}
			}
			if c != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				show, err := c.Channel(ctx, ch.ID)
				cancel()
				if err == nil {
					if !opened {
						opened = true
						if show.Heads[a.id] < acked {
							t.Fatalf("kill %d: B restarted holding A's chain to %d, but had reported %d", kills, show.Heads[a.id], acked)
						}
					}
					head = show.Heads[a.id]
					if head > acked || head == want {
						// Progress: kill at some point of the next batch.
						time.Sleep(time.Duration(mrand.IntN(40)) * time.Millisecond)
						break
					}
				} else if !opened {
					// The daemon writes api.addr in place: read too early,
					// it was empty and the client fell back to the
					// configured port, 0 here. Read it again.
					c = nil
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		if !opened {
			t.Fatalf("kill %d: B did not come up within 30s:\n%s", kills, b.log)
		}
		if head == want {
			t.Logf("round %d: B caught up before the kill (head %d)", kills, head)
		}
		acked = max(acked, head)
		if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = b.cmd.Wait()
		kills++
		if head < want {
			during++
		}
		t.Logf("kill %d after %s: B had reported A's chain to %d of %d", kills, time.Since(start).Round(time.Millisecond), head, want)
		if head == want && during == 0 && published < 64000 {
			// B caught up before any kill landed: a machine this fast
			// needs a longer backlog. A doubles it while B is down.
			want = publish(published)
			continue
		}
		if head == want {
			break
		}
	}
	if during == 0 {
		t.Fatalf("no kill landed during the catch-up of %d records", published)
	}

	// B starts once more and converges.
	b.cmd = nil
	b.start()
	bc := b.client()
	deadline := time.Now().Add(60 * time.Second)
	var bShow *api.Channel
	var err error
	for {
		if bShow, err = bc.Channel(context.Background(), ch.ID); err != nil {
			t.Fatal(err)
		}
		if bShow.Heads[a.id] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B holds A's chain to %d, A to %d", bShow.Heads[a.id], want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(bShow.Forks) > 0 || len(bShow.Flagged) > 0 {
		t.Fatalf("fork evidence at B: %+v", bShow.Forks)
	}
	recs, err := bc.Records(context.Background(), api.Query{Channel: ch.ID, Author: a.id, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(recs)) != want {
		t.Fatalf("B lists %d of A's records, A's head is %d", len(recs), want)
	}
	verifyAt := time.Now()
	for _, r := range recs {
		v, err := bc.VerifyCID(context.Background(), r.CID)
		if err != nil || !v.OK {
			t.Fatalf("record %s (seq %d) does not verify at B: %+v %v", r.CID, r.Seq, v, err)
		}
	}
	// And through the CLI, as an operator would, for a sample.
	for i := 0; i < len(recs); i += len(recs) / 10 {
		var v api.Verify
		b.mustJSON(&v, "verify", recs[i].CID)
		if !v.OK {
			t.Fatalf("sangsaeng verify %s: %+v", recs[i].CID, v)
		}
	}
	t.Logf("%d kills (%d during the catch-up), %d records reported held before a kill, 0 lost; B converged on A's head %d; %d records verified from the genesis on in %s, no fork evidence",
		kills, during, acked, want, len(recs), time.Since(verifyAt).Round(time.Millisecond))
}

// TestEquivocationShownByCLI: a member's key signs two records for one seq
// and publishes both to a daemon over the node's own gossipsub. The daemon
// keeps both, and the operator is told, through the CLI only: `channel
// show` marks the author FLAGGED and lists the fork evidence, `channel ls`
// counts it, --json says so, `get` finds both records, the daemon's log
// has the alert, and /metrics counts the evidence.
func TestEquivocationShownByCLI(t *testing.T) {
	bin := buildBinary(t)
	a := startDaemon(t, bin, "A")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "deals")
	chID, err := cid.Parse(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cheat, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	a.mustRun("channel", "invite", "deals", cheat.String())

	// The cheat: a bare libp2p host with the member's key, speaking the
	// node's gossipsub.
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	features := func(f pubsub.GossipSubFeature, p libp2pproto.ID) bool {
		return p == node.GossipSubID && (f == pubsub.GossipSubFeatureMesh || f == pubsub.GossipSubFeatureIdontwant)
	}
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubProtocols([]libp2pproto.ID{node.GossipSubID}, features),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return string(m.Data) }))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(node.Topic(chID))
	if err != nil {
		t.Fatal(err)
	}
	var id api.ID
	a.mustJSON(&id, "id")
	aID, err := peer.Decode(id.ID)
	if err != nil {
		t.Fatal(err)
	}
	info := peer.AddrInfo{ID: aID}
	for _, s := range id.Addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := peer.SplitAddr(m)
		info.Addrs = append(info.Addrs, addr)
	}
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	for !slices.Contains(tp.ListPeers(), aID) {
		if ctx.Err() != nil {
			t.Fatalf("the daemon never joined the cheat in the topic:\n%s", a.log)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var sealed []*protocol.Signed
	for _, text := range []string{"ship 100 on Monday", "ship 10 on Friday"} {
		s, err := protocol.Seal(&protocol.Record{Channel: chID, Author: cheat, Seq: 1, Time: time.Now().UnixMilli(),
			Kind: "note", Body: map[string]any{"text": text}}, key)
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, s)
		if err := tp.Publish(ctx, s.Envelope); err != nil {
			t.Fatal(err)
		}
		// One at a time: the first is the chain's, the second evidence.
		for {
			if _, _, err := a.run("get", s.CID.String()); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the daemon did not store %q:\n%s", text, a.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	one, two := sealed[0].CID.String(), sealed[1].CID.String()

	var show api.Channel
	a.mustJSON(&show, "channel", "show", "deals")
	if !slices.Contains(show.Flagged, cheat.String()) || len(show.Forks) != 1 {
		t.Fatalf("channel show --json does not flag the cheat: %+v", show)
	}
	if f := show.Forks[0]; f.Author != cheat.String() || f.Seq != 1 || !slices.Contains(f.CIDs, one) || !slices.Contains(f.CIDs, two) {
		t.Fatalf("channel show --json evidence: %+v", f)
	}
	text := a.mustRun("channel", "show", "deals")
	var flaggedLine string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, cheat.String()) && strings.Contains(line, "FLAGGED") {
			flaggedLine = line
		}
	}
	if flaggedLine == "" || !strings.Contains(text, "fork evidence:") || !strings.Contains(text, one) || !strings.Contains(text, two) {
		t.Fatalf("channel show does not show the equivocation:\n%s", text)
	}
	ls := a.mustRun("channel", "ls")
	if f := strings.Fields(lastLine(ls)); !strings.Contains(ls, "FLAGGED") || len(f) == 0 || f[len(f)-1] != "1" {
		t.Fatalf("channel ls does not count the flagged author:\n%s", ls)
	}
	metrics, err := a.client().Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), "\nsangsaeng_records_fork_evidence_total 1\n") {
		t.Fatalf("/metrics does not count the evidence:\n%s", metrics)
	}
	// The log, once the daemon has stopped writing it.
	a.stop()
	var alert string
	for _, line := range strings.Split(a.log.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "equivocation") && strings.Contains(line, cheat.String()) {
			alert = line
		}
	}
	if alert == "" {
		t.Fatalf("the daemon logged no alert naming the cheat:\n%s", a.log)
	}
	t.Logf("channel show:\n%s", text)
	t.Logf("alert: %s", alert)
}
