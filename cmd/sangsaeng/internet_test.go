package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node"
	"github.com/sangsaeng/sangsaeng/node/api"
)

// A small internet in network namespaces: a bridge "internet" with public-
// like addresses from 198.51.100.0/24, a relay company R on it, and
// companies A and B each behind its own router that masquerades its LAN
// (subnets of 203.0.113.0/24) onto the internet. A's NAT, and B's in the
// "cone" case, is nftables masquerade: the LAN's source port is kept
// where it is free, whatever the destination, but only replies from the
// address and port a mapping was made for come in, a port-restricted cone
// (nftables offers no full cone). B's in the "symmetric" case is
// masquerade random, a new port for every flow. Real daemons run in each
// namespace; every address stays inside the namespaces the test makes,
// and it removes them at the end, failed or not.
//
// go-libp2p hole-punches only between addresses manet.IsPublicAddr counts
// as public, and documentation ranges are not, so here A and B always talk
// through R: this test proves the relayed path, the NATs (cone and
// symmetric), a catch-up through the relay and an address change. Hole
// punching itself is proven on go-libp2p's simulated network
// (node/holepunch_test.go).

// netLab is the namespaces of one test's internet.
type netLab struct {
	t      *testing.T
	prefix string
	spaces []string
}

// newNetLab checks that the test can build namespaces, and removes them
// all when the test ends. It first removes those that earlier test
// processes, killed or timed out, left behind (removeStaleSpaces).
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	need := "network namespaces need root and Debian's iproute2 and nftables (.ci/run installs them)"
	if os.Geteuid() != 0 {
		skipOrFail(t, "not root: "+need)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not found: "+need)
		}
	}
	removeStaleSpaces(t)
	l := &netLab{t: t, prefix: fmt.Sprintf("ss%d", os.Getpid())}
	probe := l.prefix + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		skipOrFail(t, fmt.Sprintf("cannot create a network namespace (%v: %s): %s", err, strings.TrimSpace(string(out)), need))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(l.teardown)
	return l
}

// labSpace is the name of a namespace of a lab: ss, the pid of the test
// process that made it, a dash and the lab's own name.
var labSpace = regexp.MustCompile(`^ss([0-9]+)-\S+`)

// removeStaleSpaces removes the namespaces that test processes no longer
// running left behind (a test killed, or timed out, never runs its
// cleanup), and kills the daemons still running in them: a namespace with
// a process in it outlives its name. Namespaces of a lab still running, in
// another test process, are left alone.
func removeStaleSpaces(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return // newNetLab's probe says why namespaces cannot be made
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := labSpace.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		ns := m[0] // "ss123-inet (id: 4)" lists the name first
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if p, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Logf("removing stale namespace %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
			continue
		}
		t.Logf("removed stale namespace %s (its test process %d is gone)", ns, pid)
	}
}

// TestStaleSpacesRemoved: a lab's namespace whose test process is gone is
// removed, and what still runs in it is killed; the namespace of a
// process still running stays.
func TestStaleSpacesRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "not root: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipOrFail(t, "ip not found: .ci/run installs Debian's iproute2")
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	running := exec.Command("sleep", "60")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = running.Process.Kill(); _ = running.Wait() }()
	stale := fmt.Sprintf("ss%d-stale", gone.Process.Pid)
	live := fmt.Sprintf("ss%d-live", running.Process.Pid)
	for _, ns := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			skipOrFail(t, fmt.Sprintf("cannot create a network namespace (%v: %s)", err, strings.TrimSpace(string(out))))
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	left := exec.Command("ip", "netns", "exec", stale, "sleep", "60") // a daemon left behind
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 5*time.Second, "the leftover process in "+stale, func() bool {
		out, _ := exec.Command("ip", "netns", "pids", stale).Output()
		return strings.TrimSpace(string(out)) != ""
	})
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()

	removeStaleSpaces(t)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = left.Process.Kill()
		t.Fatalf("the process left in %s still runs", stale)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	if names[stale] || !names[live] {
		t.Fatalf("after removeStaleSpaces: %s there %v (want not), %s there %v (want there)", stale, names[stale], live, names[live])
	}
}

// skipOrFail skips the test, or fails it in CI, which must run it.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("SANGSAENG_CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func (l *netLab) teardown() {
	for _, ns := range l.spaces {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Errorf("removing namespace %s: %v: %s", ns, err, out)
		}
	}
}

// sh runs a command, failing the test when it fails.
func (l *netLab) sh(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// in runs a command in namespace ns.
func (l *netLab) in(ns string, args ...string) {
	l.t.Helper()
	l.sh(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// space creates namespace name (prefixed) with loopback up.
func (l *netLab) space(name string) string {
	l.t.Helper()
	ns := l.prefix + "-" + name
	l.sh("ip", "netns", "add", ns)
	l.spaces = append(l.spaces, ns)
	l.in(ns, "ip", "link", "set", "lo", "up")
	return ns
}

// wire connects namespace ns to the internet's bridge with interface dev
// at addr (CIDR).
func (l *netLab) wire(inet, ns, dev, addr string) {
	l.t.Helper()
	peer := fmt.Sprintf("%s-%s", strings.TrimPrefix(ns, l.prefix+"-"), dev)
	l.sh("ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", inet)
	l.in(inet, "ip", "link", "set", peer, "master", "br0")
	l.in(inet, "ip", "link", "set", peer, "up")
	l.in(ns, "ip", "addr", "add", addr, "dev", dev)
	l.in(ns, "ip", "link", "set", dev, "up")
}

// company builds a company's router and server namespaces: the router on
// the internet at wan, with address gw on the company's LAN (a /28), which
// it masquerades onto the internet (a port-restricted cone, or randomly,
// for a symmetric NAT), and the server at host on that LAN. It returns the
// server's namespace.
func (l *netLab) company(inet, name, wan, gw, host string, symmetric bool) string {
	l.t.Helper()
	rt := l.space(name + "-rt")
	l.wire(inet, rt, "wan0", wan+"/24")
	srv := l.space(name)
	l.sh("ip", "link", "add", "lan0", "netns", rt, "type", "veth", "peer", "name", "eth0", "netns", srv)
	l.in(rt, "ip", "addr", "add", gw+"/28", "dev", "lan0")
	l.in(rt, "ip", "link", "set", "lan0", "up")
	l.in(rt, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	masq := "masquerade"
	if symmetric {
		masq = "masquerade random" // a new random port for every flow: endpoint-dependent mapping
	}
	rules := fmt.Sprintf("table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  oifname \"wan0\" %s\n }\n}\n", masq)
	cmd := exec.Command("ip", "netns", "exec", rt, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft in %s: %v\n%s", rt, err, out)
	}
	l.in(srv, "ip", "addr", "add", host+"/28", "dev", "eth0")
	l.in(srv, "ip", "link", "set", "eth0", "up")
	l.in(srv, "ip", "route", "add", "default", "via", gw)
	return srv
}

// nsDaemon inits a home and starts a daemon in namespace ns, listening on
// 4801 (TCP and QUIC) there; edit changes its config first.
func nsDaemon(t *testing.T, bin, ns, name string, edit func(*node.Config)) *daemon {
	t.Helper()
	d := &daemon{t: t, bin: bin, home: t.TempDir(), name: name, netns: ns}
	d.mustRun("init", "--name", name, "--listen", "/ip4/0.0.0.0/tcp/4801",
		"--listen", "/ip4/0.0.0.0/udp/4801/quic-v1", "--api", "127.0.0.1:0")
	cfg, err := node.LoadConfig(d.home)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MDNS = false
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(func() { d.stop() })
	var id api.ID
	d.mustJSON(&id, "id")
	d.id = id.ID
	return d
}

// waitWithin polls cond every 50 ms until it holds or d passes.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// path says how d is connected to peer: "relayed", "direct", or "none".
func (d *daemon) path(peer string) string {
	var peers []api.Peer
	d.mustJSON(&peers, "peers")
	for _, p := range peers {
		if p.ID != peer {
			continue
		}
		relayed := 0
		for _, a := range p.Addrs {
			if strings.Contains(a, "/p2p-circuit") {
				relayed++
			}
		}
		switch {
		case relayed == len(p.Addrs) && relayed > 0:
			return "relayed"
		case relayed == 0 && len(p.Addrs) > 0:
			return "direct"
		default:
			return "mixed"
		}
	}
	return "none"
}

// has reports whether d holds record c.
func (d *daemon) has(c string) bool {
	_, _, err := d.run("get", c, "--json")
	return err == nil
}

// headOf is d's head for author in channel ch.
func (d *daemon) headOf(ch, author string) uint64 {
	var show api.Channel
	d.mustJSON(&show, "channel", "show", ch)
	return show.Heads[author]
}

// TestInternet runs the scenarios of a small internet: A and B behind
// their NATs join a channel by invite code through R, records flow both
// ways through R, with B behind a port-restricted cone NAT and then a
// symmetric one, a catch-up of 10,000 records through R completes, and B's
// address changes without a new invite. It prints a line per scenario.
func TestInternet(t *testing.T) {
	bin := buildBinary(t) // skips with -short
	for _, nat := range []string{"cone", "symmetric"} {
		t.Run(nat, func(t *testing.T) { internetScenario(t, bin, nat == "symmetric") })
	}
}

func internetScenario(t *testing.T, bin string, symmetric bool) {
	lab := newNetLab(t)
	inet := lab.space("inet")
	lab.in(inet, "ip", "link", "add", "br0", "type", "bridge")
	lab.in(inet, "ip", "link", "set", "br0", "up")
	rns := lab.space("r")
	lab.wire(inet, rns, "eth0", "198.51.100.10/24")
	ans := lab.company(inet, "a", "198.51.100.20", "203.0.113.1", "203.0.113.2", false)
	bns := lab.company(inet, "b", "198.51.100.30", "203.0.113.17", "203.0.113.18", symmetric)
	natB := "port-restricted cone"
	if symmetric {
		natB = "symmetric"
	}

	r := nsDaemon(t, bin, rns, "R", func(c *node.Config) { c.Relay.Enabled = true })
	var daemons []*daemon
	t.Cleanup(func() { // on failure, what the daemons logged
		if t.Failed() {
			for _, d := range daemons {
				t.Logf("%s's log, its end:\n%s", d.name, tail(d.log.String(), 80))
			}
		}
	})
	useR := func(c *node.Config) {
		c.Relay.Use = []string{"/ip4/198.51.100.10/tcp/4801/p2p/" + r.id, "/ip4/198.51.100.10/udp/4801/quic-v1/p2p/" + r.id}
		c.SyncInterval = node.Duration{Duration: 2 * time.Second}
	}
	a := nsDaemon(t, bin, ans, "A", useR)
	b := nsDaemon(t, bin, bns, "B", func(c *node.Config) { c.SyncInterval = node.Duration{Duration: 2 * time.Second} })
	daemons = append(daemons, r, a, b)

	// R, a tier-1 with a public server, has A and B in a channel: they
	// are its partners, so its relay serves them.
	var rch api.Channel
	r.mustJSON(&rch, "channel", "create", "r-ab", "--member", a.id, "--member", b.id)
	for _, d := range []*daemon{a, b} {
		var inv api.Invite
		r.mustJSON(&inv, "channel", "invite", "r-ab", d.id)
		d.mustRun("channel", "join", inv.Code)
	}
	var id api.ID
	waitWithin(t, 30*time.Second, "A's slot at R", func() bool {
		a.mustJSON(&id, "id")
		return len(id.Reachability.RelayAddrs) > 0
	})
	if id.Reachability.State != "relayed" || len(id.Reachability.Relays) != 1 || !id.Reachability.Relays[0].Reserved {
		t.Fatalf("A's reachability: %+v", id.Reachability)
	}
	t.Logf("A: sangsaeng id --json: reachability %s, relay addrs %v", id.Reachability.State, id.Reachability.RelayAddrs)

	// A invites B to a channel of their own; B, behind its NAT, joins it
	// through R, the relay A's invite code names.
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "a-b")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "a-b", b.id)
	joinStart := time.Now()
	b.mustRun("channel", "join", inv.Code)
	joined := time.Since(joinStart)
	if p := b.path(a.id); p != "relayed" {
		t.Fatalf("B is connected to A %s, want relayed through R", p)
	}

	var p1, p2 api.Published
	a.mustJSON(&p1, "publish", "a-b", "note", tempFile(t, "n1.json", `{"text": "A to B through R"}`))
	firstAB := waitWithin(t, 30*time.Second, "A's record at B", func() bool { return b.has(p1.CID) })
	b.mustJSON(&p2, "publish", "a-b", "note", tempFile(t, "n2.json", `{"text": "B to A through R"}`))
	firstBA := waitWithin(t, 30*time.Second, "B's record at A", func() bool { return a.has(p2.CID) })
	pathAB := a.path(b.id)
	if pathAB != "relayed" {
		t.Fatalf("A is connected to B %s, want relayed", pathAB)
	}
	t.Logf("scenario join+records (B behind %s NAT): path %s; join through R %s; first record A→B %s, B→A %s",
		natB, pathAB, joined.Round(time.Millisecond), firstAB.Round(time.Millisecond), firstBA.Round(time.Millisecond))

	if !symmetric {
		catchUp(t, a, b, "a-b")
		addressChange(t, lab, a, b, bns)
	}
}

// catchUp stops B, has A publish 10,000 records (an import of 10,000
// orders), starts B again and waits until B holds them all, through R.
func catchUp(t *testing.T, a, b *daemon, ch string) {
	t.Helper()
	const n = 10_000
	b.stop()
	var sb strings.Builder
	sb.WriteString("발주번호,발주일자,공급사사업자번호,공급사,항번,고객품번,품명,수량,단위,납기일자\n")
	for i := range n {
		fmt.Fprintf(&sb, "PO-%05d,2026-11-20,312-86-00455,대성정밀,1,00123,브래킷,%d,EA,2026-11-27\n", i, 10+i%90)
	}
	file := filepath.Join(t.TempDir(), "orders.csv")
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var rep api.ImportReport
	a.mustJSON(&rep, "import", "csv", file, "--channel", ch, "--kind", "order")
	if rep.Published != n {
		t.Fatalf("import published %d, want %d: %+v", rep.Published, n, rep)
	}
	want := a.headOf(ch, a.id)
	b.restartStopped()
	took := waitWithin(t, 5*time.Minute, "B's catch-up through R", func() bool { return b.headOf(ch, a.id) >= want })
	path := b.path(a.id)
	if path != "relayed" {
		t.Fatalf("after the catch-up B is connected to A %s, want relayed", path)
	}
	t.Logf("scenario catch-up: path %s; %d records in %s after B's restart (%.0f records/s through R, start-up included)",
		path, n, took.Round(time.Millisecond), float64(n)/took.Seconds())
}

// addressChange moves B to a new address in its namespace and waits until
// a record A publishes afterwards reaches B, with no new invite.
func addressChange(t *testing.T, lab *netLab, a, b *daemon, bns string) {
	t.Helper()
	// As a DHCP renumbering does: the old address goes, with the routes
	// through it, and the new one comes.
	lab.in(bns, "ip", "addr", "del", "203.0.113.18/28", "dev", "eth0")
	lab.in(bns, "ip", "addr", "add", "203.0.113.19/28", "dev", "eth0")
	lab.in(bns, "ip", "route", "replace", "default", "via", "203.0.113.17")
	var p api.Published
	a.mustJSON(&p, "publish", "a-b", "note", tempFile(t, "moved.json", `{"text": "after B moved"}`))
	took := waitWithin(t, 3*time.Minute, "A's record at B after B's address changed", func() bool { return b.has(p.CID) })
	t.Logf("scenario address change: B moved 203.0.113.18 → .19; A's next record reached it %s later (path %s), no new invite",
		took.Round(time.Millisecond), b.path(a.id))

	// Then B's company gets a new public address from its ISP: its
	// router's WAN address changes, and every mapping of its NAT with it.
	rt := bns + "-rt"
	lab.in(rt, "ip", "addr", "del", "198.51.100.30/24", "dev", "wan0")
	lab.in(rt, "ip", "addr", "add", "198.51.100.31/24", "dev", "wan0")
	a.mustJSON(&p, "publish", "a-b", "note", tempFile(t, "renumbered.json", `{"text": "after B's ISP renumbered it"}`))
	took = waitWithin(t, 3*time.Minute, "A's record at B after B's public address changed", func() bool { return b.has(p.CID) })
	var back api.Published
	b.mustJSON(&back, "publish", "a-b", "note", tempFile(t, "back.json", `{"text": "B, renumbered, to A"}`))
	tookBack := waitWithin(t, 3*time.Minute, "B's record at A after B's public address changed", func() bool { return a.has(back.CID) })
	t.Logf("scenario public address change: B's router 198.51.100.30 → .31; A's next record reached B %s later, B's reached A %s after it (path %s), no new invite",
		took.Round(time.Millisecond), tookBack.Round(time.Millisecond), b.path(a.id))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
