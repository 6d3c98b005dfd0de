package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pprofile "github.com/google/pprof/profile"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	lpmetrics "github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestScale is the scale harness (issue 16): SANGSAENG_SCALE=25,50,100 runs
// it once for each N given, in one process on loopback: N real nodes
// (hosts, gossipsub, Badger in temp dirs) in a supply-chain-shaped graph of
// 3N channels, every member publishing into each of its channels, 10 % of
// the nodes restarted during the workload (at the addresses they had: a
// pair of partners that both come back elsewhere, knowing only each other,
// cannot meet, DHT or not) and a partition that heals. It
// checks that every member ends with every record of its channels and no
// non-member with any, and logs what each node paid, by its own channel
// count. Without SANGSAENG_SCALE it runs N = 12, a check that the harness
// works, in the slow tests (it skips with -short).
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts many nodes; skipped with -short")
	}
	sizes := []int{12}
	if v := os.Getenv("SANGSAENG_SCALE"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 8 {
				t.Fatalf("SANGSAENG_SCALE=%q: give node counts of 8 or more, such as 25,50,100", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) { runScale(t, n) })
	}
}

// scaleGraph is who is in which channel: channel i's members, its admin
// (the buyer) first.
type scaleGraph struct {
	tier     []int // of each node: 0 OEM, 1, 2, 3
	channels [][]int
}

// newScaleGraph draws a supply chain of n companies: 4 % OEMs, 16 %
// tier-1s, 40 % tier-2s, 40 % tier-3s; each supplier sells to one or two
// buyers of the tier above. Then 3n channels, each a buyer with some of
// the companies below it (its suppliers, and theirs: a program channel of
// an OEM holds tier-1s and tier-2s), of 2 to 10 members, small ones most
// often (P(k) ∝ 1/k), no two with the same members; a buyer founds
// channels in proportion to the companies below it, so OEMs and tier-1s
// found more than tier-2s.
func newScaleGraph(n int, seed uint64) scaleGraph {
	r := rand.New(rand.NewPCG(seed, 1))
	g := scaleGraph{tier: make([]int, n)}
	cut := []int{max(1, n*4/100), max(2, n*20/100), max(3, n*60/100)}
	byTier := [4][]int{}
	for i := range n {
		t := 3
		for k, c := range cut {
			if i < c {
				t = k
				break
			}
		}
		g.tier[i] = t
		byTier[t] = append(byTier[t], i)
	}
	suppliers := make([][]int, n)
	for t := 1; t <= 3; t++ {
		for _, s := range byTier[t] {
			buyers := byTier[t-1]
			for range 1 + r.IntN(2) {
				b := buyers[r.IntN(len(buyers))]
				if !slices.Contains(suppliers[b], s) {
					suppliers[b] = append(suppliers[b], s)
				}
			}
		}
	}
	// below[b]: b's suppliers, then their suppliers.
	below := make([][]int, n)
	weight := 0
	var buyers []int
	for b := range n {
		below[b] = slices.Clone(suppliers[b])
		for _, s := range suppliers[b] {
			for _, ss := range suppliers[s] {
				if !slices.Contains(below[b], ss) {
					below[b] = append(below[b], ss)
				}
			}
		}
		if len(below[b]) > 0 {
			buyers = append(buyers, b)
			weight += len(below[b])
		}
	}
	sizeWeights := 0.0
	for k := 2; k <= 10; k++ {
		sizeWeights += 1 / float64(k)
	}
	seen := map[string]bool{}
	for tries := 0; len(g.channels) < 3*n && tries < 1000*n; tries++ {
		// A buyer, in proportion to the companies below it.
		w := r.IntN(weight)
		b := buyers[0]
		for _, c := range buyers {
			if w < len(below[c]) {
				b = c
				break
			}
			w -= len(below[c])
		}
		x := r.Float64() * sizeWeights
		size := 2
		for ; size < 10; size++ {
			if x -= 1 / float64(size); x < 0 {
				break
			}
		}
		cands := slices.Clone(below[b])
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		members := append([]int{b}, cands[:min(size-1, len(cands))]...)
		key := slices.Clone(members[1:])
		slices.Sort(key)
		k := fmt.Sprint(b, key)
		if seen[k] {
			continue
		}
		seen[k] = true
		g.channels = append(g.channels, members)
	}
	return g
}

// sizes counts the graph's channels by member count.
func (g scaleGraph) sizes() map[int]int {
	out := map[int]int{}
	for _, m := range g.channels {
		out[len(m)]++
	}
	return out
}

// scaleNode is one company of the harness.
type scaleNode struct {
	name   string // also its profile label: its goroutines carry node=name
	n      *Node
	bw     *lpmetrics.BandwidthCounter
	home   string
	listen []string // while it is down: the addresses it comes back at
}

// do runs fn under sn's profile label.
func (sn *scaleNode) do(fn func(context.Context)) {
	pprof.Do(context.Background(), pprof.Labels("node", sn.name), fn)
}

// publish publishes a note in ch as sn, under sn's profile label.
func (sn *scaleNode) publish(ch cid.Cid, text string) (err error) {
	sn.do(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = sn.n.Publish(ctx, ch, "note", map[string]any{"text": text}, nil)
	})
	return err
}

// byNode sums a profile's samples (CPU nanoseconds, or goroutines) by
// their "node" label, and those without one.
func byNode(t *testing.T, b []byte, what string) (nodes map[string]int64, other int64) {
	nodes = map[string]int64{}
	if len(b) == 0 {
		return nodes, 0
	}
	p, err := pprofile.ParseData(b)
	if err != nil {
		t.Logf("the %s profile: %v", what, err)
		return nodes, 0
	}
	i := len(p.SampleType) - 1 // cpu: [samples count, cpu nanoseconds]; goroutine: [goroutine count]
	for _, s := range p.Sample {
		if l := s.Label["node"]; len(l) > 0 {
			nodes[l[0]] += s.Value[i]
		} else {
			other += s.Value[i]
		}
	}
	return nodes, other
}

// listenAddrs are the addresses n listens at, ports and all.
func listenAddrs(n *Node) []string {
	var out []string
	for _, a := range n.host.Network().ListenAddresses() {
		out = append(out, a.String())
	}
	return out
}

func runScale(t *testing.T, size int) {
	g := newScaleGraph(size, uint64(size))
	start := time.Now()
	nodes := make([]*scaleNode, size)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = startScaleNode(t, fmt.Sprintf("c%03d", i), "")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("N=%d: %d nodes up in %s", size, size, time.Since(start).Round(time.Millisecond))

	// Channels: the buyer founds each and invites its suppliers. Buyers
	// work in parallel, each its own channels one after the other.
	start = time.Now()
	chans := make([]cid.Cid, len(g.channels))
	byAdmin := map[int][]int{}
	for c, m := range g.channels {
		byAdmin[m[0]] = append(byAdmin[m[0]], c)
	}
	for admin, cs := range byAdmin {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range cs {
				chans[c] = scaleChannel(t, nodes, admin, g.channels[c], fmt.Sprintf("ch%03d", c))
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	perNode := make([]int, size)
	members := 0
	for _, m := range g.channels {
		members += len(m)
		for _, i := range m {
			perNode[i]++
		}
	}
	t.Logf("N=%d: %d channels, %d memberships (%.1f channels per node, up to %d), members per channel %v, in %s",
		size, len(chans), members, float64(members)/float64(size), slices.Max(perNode), g.sizes(), time.Since(start).Round(time.Millisecond))

	// The workload: every member publishes `per` records into each of its
	// channels, in rounds; during it 10 % of the nodes go down and come
	// back, and the graph is cut in two halves for a while.
	const per = 5
	base := make([][]uint64, len(g.channels)) // each member's own head before it
	for c, m := range g.channels {
		for _, i := range m {
			h, _ := nodes[i].n.store.Head(chans[c], nodes[i].n.self)
			base[c] = append(base[c], h)
		}
	}
	time.Sleep(1100 * time.Millisecond) // bandwidth totals lag up to a second
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	cpuBefore := cpuTime()
	var cpuProf bytes.Buffer
	if err := pprof.StartCPUProfile(&cpuProf); err != nil {
		t.Logf("no CPU time per node: %v (run without -cpuprofile)", err)
	}
	sentBefore := make([]lpmetrics.Stats, size)
	storedBefore := make([]float64, size)
	for i, sn := range nodes {
		sentBefore[i] = sn.bw.GetBandwidthTotals()
		storedBefore[i] = counterValue(t, sn.n.metrics.accepted)
	}
	start = time.Now()
	down := map[int]bool{}
	for i := range max(1, size/10) {
		down[(i*7+3)%size] = true
	}
	var healed time.Time
	for round := range per {
		if round == 1 { // some nodes go down
			for i := range down {
				nodes[i].listen = listenAddrs(nodes[i].n)
				nodes[i].n.Close()
			}
		}
		if round == 2 { // a partition: the first half cannot reach the second
			scalePartition(nodes, true)
		}
		for c, m := range g.channels {
			for _, i := range m {
				if down[i] && round >= 1 {
					continue // it publishes what it missed once it is back and confirmed
				}
				if err := nodes[i].publish(chans[c], fmt.Sprintf("c%03d round %d", i, round)); err != nil {
					t.Fatalf("c%03d publishes in ch%03d: %v", i, c, err)
				}
			}
		}
		if round == 2 {
			for i := range down { // back, at the addresses they had, as a company's server
				nodes[i] = startScaleNode(t, fmt.Sprintf("c%03d", i), nodes[i].home, nodes[i].listen...)
				if nodes[i] == nil {
					t.FailNow()
				}
			}
			scalePartition(nodes, true) // the partition holds for them too
		}
		if round == 3 {
			scalePartition(nodes, false)
			healed = time.Now()
		}
	}
	// Those that were down publish the rounds they missed, each node on
	// its own: a restarted node signs again only once a partner has
	// confirmed its own head (Publish says so), so each retries.
	errs := make(chan error, len(down))
	for i := range down {
		go func() {
			for c, m := range g.channels {
				if !slices.Contains(m, i) {
					continue
				}
				for round := 1; round < per; round++ {
					var err error
					for try := time.Now(); time.Since(try) < 2*time.Minute; time.Sleep(200 * time.Millisecond) {
						err = nodes[i].publish(chans[c], fmt.Sprintf("c%03d late round %d", i, round))
						if !errors.Is(err, ErrOwnHeadUnconfirmed) {
							break
						}
					}
					if err != nil {
						errs <- fmt.Errorf("c%03d publishes in ch%03d after its restart: %w", i, c, err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range down {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	published := time.Now()

	// Every member published exactly its records: its own head is what it
	// was plus per.
	want := func(c int) map[peer.ID]uint64 {
		heads := map[peer.ID]uint64{}
		for k, i := range g.channels[c] {
			h, _ := nodes[i].n.store.Head(chans[c], nodes[i].n.self)
			if h != base[c][k]+per {
				t.Fatalf("c%03d's own head in ch%03d is %d, not %d + %d", i, c, h, base[c][k], per)
			}
			heads[nodes[i].n.self] = h
		}
		return heads
	}
	// Converged: every member holds every member's head in each of its
	// channels.
	lost := func() (missing int, where string) {
		for c, m := range g.channels {
			heads := want(c)
			for _, i := range m {
				for a, h := range heads {
					got, _ := nodes[i].n.store.Head(chans[c], a)
					if got < h {
						missing += int(h - got)
						where = fmt.Sprintf("c%03d lacks %d of %s's records of ch%03d", i, h-got, shortID(a), c)
					}
				}
			}
		}
		return missing, where
	}
	deadline := time.Now().Add(5 * time.Minute)
	for noted := false; ; {
		missing, where := lost()
		if missing == 0 {
			break
		}
		if !noted && time.Since(published) > 5*time.Second {
			noted = true // what convergence waits for, when it is slow
			t.Logf("N=%d: 5 s after the last publish %d records are missing, such as: %s", size, missing, where)
		}
		if time.Now().After(deadline) {
			t.Fatalf("N=%d: %d records still missing 5 minutes after the last publish (%s)", size, missing, where)
		}
		time.Sleep(100 * time.Millisecond)
	}
	converged := time.Now()
	workload, deliveries := 0, 0
	for _, m := range g.channels {
		workload += per * len(m)
		deliveries += per * len(m) * (len(m) - 1)
	}
	// No non-member holds any record of a channel, of any author, at any
	// seq.
	for c := range g.channels {
		for i, sn := range nodes {
			if slices.Contains(g.channels[c], i) {
				continue
			}
			if recs, _, err := sn.n.store.ByChannel(chans[c], 1, ""); err != nil || len(recs) > 0 {
				t.Fatalf("c%03d, not a member of ch%03d, holds its record %v (%v)", i, c, recs, err)
			}
		}
	}
	elapsed := time.Since(start)
	time.Sleep(1100 * time.Millisecond) // bandwidth totals lag up to a second
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	cpu := cpuTime() - cpuBefore
	pprof.StopCPUProfile()
	nodeCPU, harnessCPU := byNode(t, cpuProf.Bytes(), "cpu")
	var goProf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&goProf, 0)
	nodeGoroutines, harnessGoroutines := byNode(t, goProf.Bytes(), "goroutine")
	if harnessGoroutines > 20 {
		// The test's own are a handful: more is a node's work that escaped
		// its label, and the figures per node would miss it.
		t.Errorf("N=%d: %d goroutines carry no node's label", size, harnessGoroutines)
	}
	// What a node costs when nothing happens: gossipsub's heartbeat, sync
	// rounds, the dial loop.
	const idleFor = 10 * time.Second
	cpuProf.Reset()
	idleCPU := map[string]int64{}
	if err := pprof.StartCPUProfile(&cpuProf); err == nil {
		time.Sleep(idleFor)
		pprof.StopCPUProfile()
		idleCPU, _ = byNode(t, cpuProf.Bytes(), "cpu")
	}

	// What each node paid, by its own channel count, and by its partners
	// (the companies it shares a channel with, from the graph).
	type row struct {
		nodes, conns, peers int
		in, out             int64
		stored              float64 // records stored during the workload: own and received
		cpu, idle           time.Duration
		goroutines          int64
	}
	partners := make([]int, size)
	for i := range nodes {
		co := map[int]bool{}
		for _, m := range g.channels {
			if slices.Contains(m, i) {
				for _, j := range m {
					if j != i {
						co[j] = true
					}
				}
			}
		}
		partners[i] = len(co)
	}
	partnerBin := func(p int) int { // 0–4, 5–9, 10–19, 20–29, …
		if p < 10 {
			return p / 5 * 5
		}
		return p / 10 * 10
	}
	rows, byPartners := map[int]*row{}, map[int]*row{}
	add := func(rows map[int]*row, k, i int, sn *scaleNode) {
		r := rows[k]
		if r == nil {
			r = &row{}
			rows[k] = r
		}
		if down[i] {
			return // restarted: its counters began again
		}
		tot := sn.bw.GetBandwidthTotals()
		r.nodes++
		r.conns += len(sn.n.host.Network().Conns())
		r.peers += len(sn.n.host.Network().Peers())
		r.stored += counterValue(t, sn.n.metrics.accepted) - storedBefore[i]
		r.in += tot.TotalIn - sentBefore[i].TotalIn
		r.out += tot.TotalOut - sentBefore[i].TotalOut
		r.cpu += time.Duration(nodeCPU[sn.name])
		r.idle += time.Duration(idleCPU[sn.name])
		r.goroutines += nodeGoroutines[sn.name]
	}
	for i, sn := range nodes {
		add(rows, perNode[i], i, sn)
		add(byPartners, partnerBin(partners[i]), i, sn)
	}
	// Heap and RSS are the process's: one process holds every node, so per
	// node they are shares (Go's heap profile carries no labels). CPU time
	// and goroutines are each node's own, by profile label; what carries no
	// node's label is the harness's (and the Go runtime's).
	// Published and deliveries follow from the graph: each member's own
	// head grew by per, and each holds every member's (checked above).
	t.Logf("N=%d: %d records published, %d deliveries to every other member, 0 lost, none at a non-member; "+
		"converged %s after the last publish, %s after the partition healed (the restarted nodes' late rounds included); workload %s (%.0f records/s published); "+
		"per node: CPU %s, %d goroutines, heap %.1f MB, RSS %.1f MB, %.1f MB allocated",
		size, workload, deliveries, converged.Sub(published).Round(10*time.Millisecond), converged.Sub(healed).Round(10*time.Millisecond),
		elapsed.Round(time.Millisecond), float64(workload)/elapsed.Seconds(),
		(cpu / time.Duration(size)).Round(time.Millisecond), runtime.NumGoroutine()/size,
		float64(after.HeapInuse)/1e6/float64(size), rssMB()/float64(size),
		float64(after.TotalAlloc-before.TotalAlloc)/1e6/float64(size))
	var labelled int64
	for _, v := range nodeCPU {
		labelled += v
	}
	if all := labelled + harnessCPU; all > 0 {
		t.Logf("N=%d: CPU in the nodes %s, in the harness and runtime %s (%.0f %%); the process used %.2f of %d cores over the workload; %d goroutines outside the nodes",
			size, time.Duration(labelled).Round(time.Millisecond), time.Duration(harnessCPU).Round(time.Millisecond),
			100*float64(harnessCPU)/float64(all), cpu.Seconds()/elapsed.Seconds(), runtime.GOMAXPROCS(0), harnessGoroutines)
	}
	logRows := func(what string, rows map[int]*row) {
		for _, k := range slices.Sorted(maps.Keys(rows)) {
			r := rows[k]
			if r.nodes == 0 {
				continue
			}
			nn := float64(r.nodes)
			idlePerSec := r.idle.Seconds() / idleFor.Seconds() / nn
			net := r.cpu.Seconds()/nn - idlePerSec*elapsed.Seconds()
			perRecord := 0.0
			if r.stored > 0 {
				perRecord = net / (r.stored / nn) * 1e6
			}
			t.Logf("N=%d: nodes %s %2d: %3d nodes, %.1f peers (%.1f conns), %.0f records stored, %.0f KB in, %.0f KB out (stream payload), "+
				"CPU %s (idle %.1f ms/s, %.0f µs a record stored), %.0f goroutines per node",
				size, what, k, r.nodes, float64(r.peers)/nn, float64(r.conns)/nn, r.stored/nn, float64(r.in)/1e3/nn, float64(r.out)/1e3/nn,
				(r.cpu / time.Duration(r.nodes)).Round(time.Millisecond), idlePerSec*1e3, perRecord, float64(r.goroutines)/nn)
		}
	}
	// The restarted nodes are left out of the rows: their counters began
	// again at their restart.
	logRows("in channels", rows)
	logRows("with partners from", byPartners)
}

// startScaleNode starts a node of the harness in home (a new one when
// empty; listening at listen when given), with a bandwidth counter of its
// own.
func startScaleNode(t *testing.T, name, home string, listen ...string) *scaleNode {
	var cfg *Config
	var err error
	if home == "" {
		cfg, err = Init(t.TempDir(), InitOptions{Name: name, Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}, API: "127.0.0.1:0"})
	} else {
		cfg, err = LoadConfig(home)
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	cfg.MDNS = false
	cfg.SyncInterval = Duration{5 * time.Second}
	if len(listen) > 0 {
		cfg.Listen = listen
	}
	bw := lpmetrics.NewBandwidthCounter()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})).With("company", name)
	// Every goroutine the node starts, and those they start, carry its
	// label, so that profiles tell the nodes apart.
	var n *Node
	pprof.Do(context.Background(), pprof.Labels("node", name), func(context.Context) {
		if n, err = New(cfg, WithLogger(log), WithoutNATPortMap(), WithHostOptions(libp2p.BandwidthReporter(bw))); err == nil {
			err = n.Start()
		}
	})
	if n != nil {
		t.Cleanup(func() { n.Close() })
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	return &scaleNode{name: name, n: n, bw: bw, home: cfg.Home}
}

// scaleChannel founds a channel of members (the admin first) and has each
// join it with an invite.
func scaleChannel(t *testing.T, nodes []*scaleNode, admin int, members []int, name string) cid.Cid {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := nodes[admin].n
	// Each under the label of the node acting: the goroutines they start
	// (subscriptions, the connections a join dials) are that node's.
	var ch cid.Cid
	var err error
	nodes[admin].do(func(context.Context) { ch, err = a.CreateChannel(ctx, name, "", nil) })
	if err != nil {
		t.Errorf("%s: create: %v", name, err)
		return cid.Undef
	}
	for _, m := range members[1:] {
		var code string
		nodes[admin].do(func(context.Context) { code, err = a.Invite(ctx, ch, nodes[m].n.self) })
		if err != nil {
			t.Errorf("%s: invite c%03d: %v", name, m, err)
			return ch
		}
		nodes[m].do(func(context.Context) { _, err = nodes[m].n.Join(ctx, code) })
		if err != nil {
			t.Errorf("%s: c%03d joins: %v", name, m, err)
			return ch
		}
	}
	return ch
}

// scalePartition cuts (or heals) the graph in two halves: each node of one
// half refuses the other's.
func scalePartition(nodes []*scaleNode, cut bool) {
	half := len(nodes) / 2
	for i, x := range nodes {
		for j, y := range nodes {
			if (i < half) == (j < half) {
				continue
			}
			if cut {
				x.n.gater.deny.Store(y.n.self, true)
				_ = x.n.host.Network().ClosePeer(y.n.self)
			} else {
				x.n.gater.deny.Delete(y.n.self)
			}
		}
	}
}

// cpuTime is the process's CPU time, user and system.
func cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100) // clock ticks of 1/100 s
}

// rssMB is the process's resident set, in MB.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1e3
		}
	}
	return 0
}
