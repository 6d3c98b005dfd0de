package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// These tests build the binary and run daemons as separate processes on
// loopback, driving them only through the CLI, as an operator would.

// buildBinary builds cmd/sangsaeng once per test into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts daemons as separate processes; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "sangsaeng")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemon is a running `sangsaeng daemon` process.
type daemon struct {
	t    *testing.T
	bin  string
	home string
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	id   string
	// netns, when set, is the network namespace the daemon and the
	// commands against it run in (internet_test.go).
	netns string
}

// command returns the command that runs the binary with args, in the
// daemon's network namespace when it has one.
func (d *daemon) command(args ...string) *exec.Cmd {
	if d.netns != "" {
		return exec.Command("ip", append([]string{"netns", "exec", d.netns, d.bin}, args...)...)
	}
	return exec.Command(d.bin, args...)
}

// startDaemon inits a home on loopback with random ports and starts the daemon.
func startDaemon(t *testing.T, bin, name string) *daemon {
	t.Helper()
	return startDaemonWith(t, bin, name)
}

func (d *daemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	d.cmd = d.command("daemon", "--home", d.home, "--log-level", "debug")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(d.home, api.AddrFile)); err == nil {
			if _, _, err := d.run("id"); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: daemon did not start:\n%s", d.name, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("%s: daemon exited with %v:\n%s", d.name, err, d.log)
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Errorf("%s: daemon did not stop on SIGTERM", d.name)
	}
}

// run runs a CLI command against the daemon's home.
func (d *daemon) run(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	c := d.command(append(args, "--home", d.home)...)
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	return o.String(), e.String(), err
}

func (d *daemon) mustRun(args ...string) string {
	d.t.Helper()
	out, errOut, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("%s: sangsaeng %s: %v\n%s", d.name, strings.Join(args, " "), err, errOut)
	}
	return out
}

func (d *daemon) mustJSON(v any, args ...string) {
	d.t.Helper()
	out := d.mustRun(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("%s: sangsaeng %s --json printed %q: %v", d.name, strings.Join(args, " "), out, err)
	}
}

// waitRecord polls `get` until the daemon holds the record.
func (d *daemon) waitRecord(c string) api.Record {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _, err := d.run("get", c, "--json")
		if err == nil {
			var r api.Record
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				d.t.Fatal(err)
			}
			return r
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s did not receive %s within 15s:\n%s", d.name, c, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tempFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const orderJSON = `{
  "docId": "PO-HB-2611-001", "docVersion": 1, "issuedAt": "2026-11-23T09:00:00+09:00",
  "buyer": {"scheme": "kr-brn", "id": "1388101230", "name": "한빛모터스"},
  "seller": {"scheme": "kr-brn", "id": "3128600455", "name": "대성정밀"},
  "lines": [{"lineId": "10", "item": {"buyerPartNo": "58101-3X000"},
             "quantity": {"value": "2400", "unit": "H87"}, "requestedDelivery": {"date": "2026-11-27"}}]
}`

// TestDaemons runs three daemons (an OEM, a tier-1, a tier-2) in separate
// processes: channels by invite code, sharing both ways, isolation of the
// channel the OEM is not in, get --raw, verify, and schema errors.
func TestDaemons(t *testing.T) {
	bin := buildBinary(t)
	oem, t1, t2 := startDaemon(t, bin, "한빛모터스"), startDaemon(t, bin, "대성정밀"), startDaemon(t, bin, "세진소재")

	var up, down api.Channel
	oem.mustJSON(&up, "channel", "create", "oem-t1")
	var inv api.Invite
	oem.mustJSON(&inv, "channel", "invite", "oem-t1", t1.id)
	t1.mustRun("channel", "join", inv.Code)
	t1.mustJSON(&down, "channel", "create", "t1-t2")
	t1.mustJSON(&inv, "channel", "invite", "t1-t2", t2.id)
	t2.mustRun("channel", "join", inv.Code)

	// OEM → tier-1, and the record arrives intact.
	var pub api.Published
	oem.mustJSON(&pub, "publish", "oem-t1", "order", tempFile(t, "po.json", orderJSON))
	got := t1.waitRecord(pub.CID)
	if got.Kind != "order" || got.Author != oem.id || got.Channel != up.ID {
		t.Fatalf("tier-1 got %+v", got)
	}

	// Tier-1 → OEM: both ways, with a link, from stdin.
	resp := `{"docId": "OR-1", "docVersion": 1, "issuedAt": "2026-11-23T11:30:00+09:00",
	  "orderRef": {"docId": "PO-HB-2611-001"}, "seller": {"scheme": "vendor", "id": "DS"},
	  "buyer": {"scheme": "vendor", "id": "HB"}, "responseCode": "accepted"}`
	c := exec.Command(bin, "publish", up.ID, "order-response", "-", "--link", "responds-to="+pub.CID, "--home", t1.home, "--json")
	c.Stdin = strings.NewReader(resp)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("publish from stdin: %v", err)
	}
	var pub2 api.Published
	if err := json.Unmarshal(out, &pub2); err != nil {
		t.Fatal(err)
	}
	if r := oem.waitRecord(pub2.CID); len(r.Links) != 1 || r.Links[0].CID != pub.CID {
		t.Fatalf("the response lost its link: %+v", r.Links)
	}

	// Tier-1 → tier-2 in the other channel; the OEM, connected to the
	// tier-1, must not get it.
	var pub3 api.Published
	t1.mustJSON(&pub3, "publish", "t1-t2", "note", tempFile(t, "note.json", `{"text": "마찰재 400kg 발주합니다"}`))
	t2.waitRecord(pub3.CID)
	var peers []api.Peer
	oem.mustJSON(&peers, "peers")
	connected := false
	for _, p := range peers {
		connected = connected || p.ID == t1.id
	}
	if !connected {
		t.Fatalf("the OEM is not connected to the tier-1: %+v", peers)
	}
	// A later record in the OEM's own channel: when it has arrived, the
	// tier-1–tier-2 note would have too, had it leaked.
	var probe api.Published
	t1.mustJSON(&probe, "publish", "oem-t1", "note", tempFile(t, "probe.json", `{"text": "probe"}`))
	oem.waitRecord(probe.CID)
	if _, errOut, err := oem.run("get", pub3.CID); err == nil || !strings.Contains(errOut, "not found") {
		t.Fatalf("the OEM holds a record of a channel it is not in (err %v, %s)", err, errOut)
	}
	var recs []api.Record
	oem.mustJSON(&recs, "records", "--limit", "1000")
	for _, r := range recs {
		if r.Channel == down.ID {
			t.Fatalf("the OEM lists a record of the tier-1–tier-2 channel: %+v", r)
		}
	}

	// get --raw gives the envelope; verify checks it, online and offline.
	raw, _, err := t2.run("get", pub3.CID, "--raw")
	if err != nil {
		t.Fatal(err)
	}
	envFile := tempFile(t, "note.env", raw)
	var v api.Verify
	t2.mustJSON(&v, "verify", envFile)
	if !v.OK || v.CID != pub3.CID || v.Author != t1.id {
		t.Fatalf("verify of the raw envelope: %+v", v)
	}
	t2.mustJSON(&v, "verify", pub3.CID)
	if !v.OK {
		t.Fatalf("verify by CID: %+v", v)
	}
	tampered := []byte(raw)
	tampered[len(tampered)/2] ^= 0x01
	if out, _, err := t2.run("verify", tempFile(t, "bad.env", string(tampered)), "--json"); err == nil {
		t.Fatalf("a tampered envelope verified: %s", out)
	}

	// A body that breaks its schema is refused with the field named.
	bad := strings.Replace(orderJSON, `"2400"`, `"2,400"`, 1)
	_, errOut, err := oem.run("publish", "oem-t1", "order", tempFile(t, "bad.json", bad))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, "lines/0/quantity/value") {
		t.Fatalf("bad body: exit %v, stderr %q", err, errOut)
	}

	// Channel heads agree on both members.
	var a, b api.Channel
	oem.mustJSON(&a, "channel", "show", up.ID)
	t1.mustJSON(&b, "channel", "show", "oem-t1")
	if a.Heads[t1.id] != b.Heads[t1.id] || a.Heads[oem.id] != b.Heads[oem.id] || a.Heads[t1.id] == 0 {
		t.Fatalf("heads differ: OEM sees %v, tier-1 %v", a.Heads, b.Heads)
	}

	// Offline verify once the daemon is gone.
	t2.stop()
	outOff, errOff, err := t2.run("verify", envFile)
	if err != nil || !strings.Contains(errOff+outOff, "offline") {
		t.Fatalf("offline verify: %v\n%s%s", err, outOff, errOff)
	}
	if _, err := os.Stat(filepath.Join(t2.home, api.AddrFile)); !os.IsNotExist(err) {
		t.Fatalf("api.addr left behind after a clean stop: %v", err)
	}
}

// TestDaemonRestart: records and channels survive a restart, and the
// partner reconnects from the address book.
func TestDaemonRestart(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "ab")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "ab", b.id)
	b.mustRun("channel", "join", inv.Code)
	var p1 api.Published
	a.mustJSON(&p1, "publish", "ab", "note", tempFile(t, "n.json", `{"text": "one"}`))
	b.waitRecord(p1.CID)

	b.stop()
	b.cmd = nil
	b.start()
	b.waitRecord(p1.CID) // still there
	deadline := time.Now().Add(15 * time.Second)
	for { // B dials A from its address book
		var peers []api.Peer
		b.mustJSON(&peers, "peers")
		if len(peers) == 1 && peers[0].ID == a.id && len(peers[0].Channels) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not reconnect to A: %+v\n%s", peers, b.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var p2 api.Published
	b.mustJSON(&p2, "publish", "ab", "note", tempFile(t, "n2.json", `{"text": "two"}`))
	if p2.Seq != 2 { // its profile was seq 1
		t.Fatalf("after restart, B published seq %d, want 2", p2.Seq)
	}
	a.waitRecord(p2.CID)
}

// client returns an API client of the running daemon.
func (d *daemon) client() *api.Client {
	d.t.Helper()
	c, err := api.FromHome(d.home, "")
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// TestKillDuringPublishing kills a publishing daemon with SIGKILL again and
// again: every record whose publish was acknowledged survives, the store
// always opens, the author's chain verifies from the start, and no seq is
// ever signed twice (no fork evidence at the author or at its partner).
func TestKillDuringPublishing(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "ab")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "ab", b.id)
	b.mustRun("channel", "join", inv.Code)

	const kills = 10
	var acked []string
	for round := range kills {
		c := a.client()
		ctx, cancel := context.WithCancel(context.Background())
		ackc := make(chan string, 1024)
		var wg sync.WaitGroup
		var errMu sync.Mutex
		var refusals int
		var lastErr error
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					body := fmt.Sprintf(`{"text": "round %d worker %d record %d"}`, round, w, i)
					p, err := c.Publish(ctx, ch.ID, api.Publish{Kind: "note", Body: json.RawMessage(body)})
					if err != nil {
						// Not acknowledged: the daemon died under us, or
						// refused (just restarted, it may not have its own
						// head confirmed by the partner yet). Try again
						// until the kill.
						errMu.Lock()
						refusals, lastErr = refusals+1, err
						errMu.Unlock()
						time.Sleep(20 * time.Millisecond)
						continue
					}
					ackc <- p.CID
				}
			}()
		}
		got := 0
		roundStart := time.Now()
		stuck := time.After(30 * time.Second)
		for got < 100 {
			select {
			case c := <-ackc:
				acked = append(acked, c)
				got++
			case <-stuck:
				errMu.Lock()
				k, last := refusals, lastErr
				errMu.Unlock()
				t.Fatalf("round %d: %d publishes acknowledged in 30s, %d refused, the last with: %v\n%s", round, got, k, last, a.log)
			}
		}
		errMu.Lock()
		t.Logf("round %d: 100 publishes acknowledged in %s (%d refused before, the last with: %v)", round, time.Since(roundStart).Round(time.Millisecond), refusals, lastErr)
		errMu.Unlock()
		// Kill mid-stream, while publishes are in flight.
		if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = a.cmd.Wait()
		cancel()
		wg.Wait()
		close(ackc)
		for cid := range ackc {
			acked = append(acked, cid)
		}
		a.cmd = nil
		restartAt := time.Now()
		a.start() // the store must open after every kill
		t.Logf("round %d: restarted in %s", round, time.Since(restartAt).Round(time.Millisecond))
	}
	// The chain verifies from the start, and nothing was signed twice.
	var show api.Channel
	a.mustJSON(&show, "channel", "show", "ab")
	head := show.Heads[a.id]
	if head < uint64(len(acked)) {
		t.Fatalf("A's head is %d but %d publishes were acknowledged", head, len(acked))
	}
	if len(show.Forks) > 0 || len(show.Flagged) > 0 {
		t.Fatalf("fork evidence at the author: %+v", show.Forks)
	}
	var recs []api.Record
	a.mustJSON(&recs, "records", "--channel", "ab", "--author", a.id, "--limit", "10000")
	if uint64(len(recs)) != head {
		t.Fatalf("A lists %d records of its own but its head is %d: a gap or a fork", len(recs), head)
	}
	// Every acknowledged record is there: in the listing, and by `get`
	// for a sample (one CLI process per record would take most of a
	// minute).
	listed := map[string]bool{}
	for _, r := range recs {
		listed[r.CID] = true
	}
	for i, c := range acked {
		if !listed[c] {
			t.Fatalf("acknowledged record %s lost after %d kills", c, kills)
		}
		if i%50 == 0 {
			if _, errOut, err := a.run("get", c); err != nil {
				t.Fatalf("sangsaeng get %s (acknowledged): %s", c, errOut)
			}
		}
	}
	client := a.client()
	verifyAt := time.Now()
	defer func() { t.Logf("verified %d records in %s", len(recs), time.Since(verifyAt).Round(time.Millisecond)) }()
	for _, r := range recs {
		v, err := client.VerifyCID(context.Background(), r.CID)
		if err != nil || !v.OK {
			t.Fatalf("record %s (seq %d) does not verify: %+v %v", r.CID, r.Seq, v, err)
		}
	}
	// The partner converges on the same chain, without fork evidence.
	convergeAt := time.Now()
	defer func() { t.Logf("partner converged in %s", time.Since(convergeAt).Round(time.Millisecond)) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var bs api.Channel
		b.mustJSON(&bs, "channel", "show", ch.ID)
		if len(bs.Forks) > 0 {
			t.Fatalf("fork evidence at the partner: %+v", bs.Forks)
		}
		if bs.Heads[a.id] == head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B holds A's chain to %d, A to %d", bs.Heads[a.id], head)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d kills, %d acknowledged publishes, 0 lost, head %d, no forks", kills, len(acked), head)
}
