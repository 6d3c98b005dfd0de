package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// The phases of the bench, in the order they run.
const (
	phaseBaseline   = "baseline"
	phaseThroughput = "throughput"
	phaseLatency    = "latency"
	phaseCatchup    = "catchup"
	phaseStartup    = "startup"
)

var benchPhases = []string{phaseBaseline, phaseThroughput, phaseLatency, phaseCatchup, phaseStartup}

// benchConfig is what `sangsaeng bench` was asked to measure.
type benchConfig struct {
	records        int
	payload        int
	nodes          int
	rate           float64
	latencyRecords int
	catchupRecords int
	startupRecords int
	loadBatch      int
	curve          []float64
	publishers     int
	idle           time.Duration
	phases         []string
	profileDir     string
}

// has reports whether phase is to run.
func (c *benchConfig) has(phase string) bool { return slices.Contains(c.phases, phase) }

// benchReport is the result of a bench run: the --json object. Figures of
// a phase that did not run are left out.
type benchReport struct {
	Nodes        int      `json:"nodes"`
	PayloadBytes int      `json:"payload_bytes"`
	Phases       []string `json:"phases"`

	// throughput: records published as fast as possible by one node.
	Records         int      `json:"records,omitempty"`
	Publishers      int      `json:"publishers,omitempty"`
	DeliveredPerSec *float64 `json:"delivered_per_sec,omitempty"`
	Delivered       *int     `json:"delivered,omitempty"`
	Lost            *int     `json:"lost,omitempty"`
	PublishedPerSec *float64 `json:"published_per_sec,omitempty"`

	// baseline: bare gossipsub, same processes, transport and payload.
	// BaselinePerSec is what it delivers under the load the throughput
	// phase puts on the node (the same burst, from as many goroutines):
	// the like-for-like figure, which Ratio compares with. It drops what
	// its queues cannot hold (BaselineLost). BaselineSteady* is its best
	// delivered rate over a ramp of steady offered rates (the steps in
	// BaselineSteps), where it drops little: a figure of its capacity
	// under a load shaped for it, which RatioSteady compares with.
	BaselinePerSec        *float64    `json:"baseline_per_sec,omitempty"`
	BaselineDelivered     *int        `json:"baseline_delivered,omitempty"`
	BaselineLost          *int        `json:"baseline_lost,omitempty"`
	BaselineSteadyPerSec  *float64    `json:"baseline_steady_per_sec,omitempty"`
	BaselineSteadyOffered *float64    `json:"baseline_steady_offered_per_sec,omitempty"`
	BaselineSteadySent    *int        `json:"baseline_steady_sent,omitempty"`
	BaselineSteadyLost    *int        `json:"baseline_steady_lost,omitempty"`
	BaselineSteps         []benchStep `json:"baseline_steps,omitempty"`
	Ratio                 *float64    `json:"ratio,omitempty"`
	RatioSteady           *float64    `json:"ratio_steady,omitempty"`

	// latency: publish to stored at a partner, at a fixed rate.
	Rate            float64  `json:"rate,omitempty"`
	LatencyRecords  int      `json:"latency_records,omitempty"`
	LatencyReceived *int     `json:"latency_received,omitempty"`
	P50Ms           *float64 `json:"p50_ms,omitempty"`
	P90Ms           *float64 `json:"p90_ms,omitempty"`
	P99Ms           *float64 `json:"p99_ms,omitempty"`
	MaxMs           *float64 `json:"max_ms,omitempty"`
	// LatencyCurve is the same at each rate of --curve (and --rate).
	LatencyCurve []benchLatency `json:"latency_curve,omitempty"`

	// catchup: sync after a restart.
	CatchupRecords  int      `json:"catchup_records,omitempty"`
	CatchupReceived *int     `json:"catchup_received,omitempty"`
	CatchupPerSec   *float64 `json:"catchup_per_sec,omitempty"`
	CatchupSec      *float64 `json:"catchup_sec,omitempty"`
	LoadSec         *float64 `json:"load_sec,omitempty"`
	// LoadBatch is how many of the waiting records share a signature, as
	// the node signs a burst it publishes (1: each signed on its own).
	LoadBatch int `json:"load_batch,omitempty"`

	// startup: a node restarted with StartupRecords held (its own chain
	// loaded into its store as in catch-up). StartupMs is from starting
	// its process to the node started (gossip joined, API and sync
	// running); StartupOpenMs the part of it in node.New (the store
	// opened, governance, key logs and receipts read).
	StartupRecords int      `json:"startup_records,omitempty"`
	StartupHeld    *int     `json:"startup_held,omitempty"`
	StartupMs      *float64 `json:"startup_ms,omitempty"`
	StartupOpenMs  *float64 `json:"startup_open_ms,omitempty"`
	StartupLoadSec *float64 `json:"startup_load_sec,omitempty"`

	// memory: the largest peak resident size of a node process, the
	// largest anonymous part of it seen (the rest is mapped files: Badger's
	// tables and value log, which the kernel can reclaim), and each node's.
	RSSMB     float64            `json:"rss_mb"`
	AnonMB    float64            `json:"rss_anon_mb"`
	RSSMBNode map[string]float64 `json:"rss_mb_by_node"`

	// Counters are what each node's metrics counted during each phase, by
	// phase and node (the counters that moved): records accepted,
	// duplicates, dropped by gossipsub's queues, syncs, records served...
	Counters map[string]map[string]map[string]float64 `json:"counters"`

	// SettleSec is how long the nodes took to go quiet (under 5 % of a
	// core) before each phase: the background work the phase before left.
	SettleSec  map[string]float64 `json:"settle_sec"`
	ElapsedSec float64            `json:"elapsed_sec"`
}

// benchLatency is the latency phase at one rate.
type benchLatency struct {
	Rate     float64 `json:"rate"`
	Records  int     `json:"records"`
	Received int     `json:"received"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// benchStep is one step of the baseline's ramp.
type benchStep struct {
	Offered   float64 `json:"offered_per_sec"`
	Sent      int     `json:"sent"`
	Delivered int     `json:"delivered"`
	PerSec    float64 `json:"delivered_per_sec"`
}

// cmdBench measures a small network of nodes on loopback, each a process of
// its own, against bare gossipsub.
func cmdBench(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case benchNodeWord:
			return benchNodeChild(ctx, env, args[1:])
		case benchBaselineWord:
			return benchBaselineChild(ctx, env, args[1:])
		}
	}
	f := env.flags("bench [--records N] [--payload BYTES] [--nodes N] [--rate R] [--phases LIST] [--json]",
		"Measure sangsaeng on this machine. The bench starts its own nodes, each a process\n"+
			"with a fresh temporary home, on loopback TCP, and measures, in order:\n"+
			"  baseline    bare go-libp2p-pubsub gossipsub with its default settings, same number\n"+
			"              of processes, transport and payload: messages per second a partner\n"+
			"              receives of the same burst as the throughput phase (the ratio's\n"+
			"              baseline; gossipsub drops what its queues cannot hold), and the\n"+
			"              most it receives over a ramp of steady rates (ratio_steady)\n"+
			"  throughput  records per second stored at every partner, end to end (sign, store,\n"+
			"              gossip, validate, store), one node publishing as fast as it can\n"+
			"  latency     publish-to-stored-at-partner latency at a fixed rate\n"+
			"  catchup     records per second a restarted member ingests through sync\n"+
			"  startup     how long a node holding --startup-records takes to start\n"+
			"and the largest resident memory of a node process. Progress goes to stderr, the\n"+
			"result to stdout: a table, or with --json one object. No daemon or home is\n"+
			"touched; --log-level sets the nodes' logging (default warn), which goes nowhere\n"+
			"unless a node fails.")
	cfg := benchConfig{}
	f.IntVar(&cfg.records, "records", 20000, "records to publish in the throughput phase, and messages in the baseline's burst (default 20000)")
	f.IntVar(&cfg.payload, "payload", 256, "approximate size in `BYTES` of a record (its signed payload) and of a baseline message (default 256)")
	f.IntVar(&cfg.nodes, "nodes", 2, "node processes: one publishes, the others are members of its channel and receive (default 2)")
	f.Float64Var(&cfg.rate, "rate", 1000, "records per second in the latency phase (default 1000)")
	f.IntVar(&cfg.latencyRecords, "latency-records", 10000, "records to publish in the latency phase (default 10000)")
	f.IntVar(&cfg.catchupRecords, "catchup-records", 100000, "records waiting for the restarted member in the catch-up phase (default 100000)")
	f.IntVar(&cfg.startupRecords, "startup-records", 1000000, "records the node holds when the startup phase restarts it (default 1000000)")
	f.IntVar(&cfg.loadBatch, "load-batch", benchLoadBatch, fmt.Sprintf("records per signature in what catch-up and startup load, as the node signs a burst (1: each signed alone; default %d)", benchLoadBatch))
	curve := f.String("curve", "1000,2000,5000", "rates, records per second, of the latency phase's curve, besides --rate (default 1000,2000,5000)")
	f.IntVar(&cfg.publishers, "publishers", 64, "goroutines publishing at once in the throughput phase and the baseline's burst (default 64)")
	f.DurationVar(&cfg.idle, "idle", 5*time.Second, "a phase ends when a partner has stored nothing new for this long (default 5s)")
	phases := f.String("phases", "all", "phases to run: all (the default), or a comma-separated list of "+strings.Join(benchPhases, ", "))
	f.StringVar(&cfg.profileDir, "cpuprofile", "", "write a CPU profile of each node process into `DIR`, as NAME.pprof")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	switch {
	case cfg.records < 1 || cfg.latencyRecords < 1 || cfg.catchupRecords < 1 || cfg.startupRecords < 1:
		return f.usageErrorf("--records, --latency-records, --catchup-records and --startup-records must be at least 1")
	case cfg.loadBatch < 1 || cfg.loadBatch > protocol.MaxBatch:
		return f.usageErrorf("--load-batch %d: want 1 to %d", cfg.loadBatch, protocol.MaxBatch)
	case cfg.payload < 1 || cfg.payload > 64<<10:
		return f.usageErrorf("--payload %d: want 1 to %d bytes", cfg.payload, 64<<10)
	case cfg.nodes < 2 || cfg.nodes > 32:
		return f.usageErrorf("--nodes %d: want 2 to 32", cfg.nodes)
	case cfg.rate <= 0 || math.IsInf(cfg.rate, 0) || math.IsNaN(cfg.rate):
		return f.usageErrorf("--rate must be above 0")
	case cfg.publishers < 1:
		return f.usageErrorf("--publishers must be at least 1")
	case cfg.idle < 100*time.Millisecond:
		return f.usageErrorf("--idle must be at least 100ms")
	}
	if cfg.curve, err = parseRates(*curve, cfg.rate); err != nil {
		return f.usageErrorf("--curve %s: %v", *curve, err)
	}
	if cfg.phases, err = parsePhases(*phases); err != nil {
		return f.usageErrorf("--phases %s: %v", *phases, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: cannot find this program to start its nodes: %w", err)
	}
	if cfg.profileDir != "" {
		if cfg.profileDir, err = filepath.Abs(cfg.profileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	root, err := os.MkdirTemp("", "sangsaeng-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &bench{cfg: cfg, env: env, exe: exe, root: root, rep: benchReport{
		Nodes: cfg.nodes, PayloadBytes: cfg.payload, Phases: cfg.phases, RSSMBNode: map[string]float64{}, SettleSec: map[string]float64{},
		Counters: map[string]map[string]map[string]float64{},
	}}
	start := time.Now()
	err = b.run(ctx)
	if cerr := b.stopAll(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench interrupted")
		}
		return fmt.Errorf("bench: %w", err)
	}
	b.rep.ElapsedSec = round(time.Since(start).Seconds(), 1)
	if env.JSON {
		return env.printJSON(b.rep)
	}
	return b.rep.print(env)
}

// parseRates reads --curve: the rates, with first in front, each once.
func parseRates(s string, first float64) ([]float64, error) {
	out := []float64{first}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a rate above 0", strings.TrimSpace(f))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// parsePhases reads --phases.
func parsePhases(s string) ([]string, error) {
	if s == "all" {
		return benchPhases, nil
	}
	want := map[string]bool{}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(benchPhases, p) {
			return nil, fmt.Errorf("unknown phase %q (want all, or some of %s)", p, strings.Join(benchPhases, ", "))
		}
		want[p] = true
	}
	var out []string
	for _, p := range benchPhases {
		if want[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

// bench is one run of `sangsaeng bench`.
type bench struct {
	cfg  benchConfig
	env  *Env
	exe  string
	root string // the temp dir holding every node's home
	rep  benchReport

	children []*benchChild // every child started, to stop at the end
	nodes    []*benchChild // the node processes, by index
	channel  string        // the bench's channel, once the nodes are set up
}

// progress prints a line on stderr.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.env.Stderr, "bench: "+format+"\n", args...)
}

// run runs the phases asked for: the baseline on its own processes, then
// the node phases on one set of nodes, each from quiet nodes, with the
// nodes' counters taken around it.
func (b *bench) run(ctx context.Context) error {
	if b.cfg.has(phaseBaseline) {
		if err := b.baseline(ctx); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
	}
	if !b.cfg.has(phaseThroughput) && !b.cfg.has(phaseLatency) && !b.cfg.has(phaseCatchup) && !b.cfg.has(phaseStartup) {
		return nil
	}
	if err := b.setup(ctx); err != nil {
		return fmt.Errorf("setting up the nodes: %w", err)
	}
	for _, p := range []struct {
		name string
		run  func(context.Context) error
	}{
		{phaseThroughput, b.throughput},
		{phaseLatency, b.latency},
		{phaseCatchup, b.catchup},
		{phaseStartup, b.startup},
	} {
		if !b.cfg.has(p.name) {
			continue
		}
		d := b.settle(ctx)
		b.rep.SettleSec[p.name] = round(d.Seconds(), 1)
		if d > time.Second {
			b.progress("%s: waited %.1f s for the nodes to go quiet", p.name, d.Seconds())
		}
		before, err := b.counters(ctx)
		if err != nil {
			return err
		}
		if err := p.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		after, err := b.counters(ctx)
		if err != nil {
			return err
		}
		b.rep.Counters[p.name] = counterDeltas(before, after)
	}
	return nil
}

// counterDeltas returns, by node, the counters that moved from before to
// after; a node not in before (restarted) counts from zero.
func counterDeltas(before, after map[string]map[string]float64) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	for name, a := range after {
		d := map[string]float64{}
		for k, v := range a {
			if strings.HasPrefix(k, "sangsaeng_sync_lag") { // a gauge
				continue
			}
			if delta := v - before[name][k]; delta != 0 {
				d[k] = delta
			}
		}
		out[name] = d
	}
	return out
}

// startNode starts a node process on the home named name (created when new).
func (b *bench) startNode(ctx context.Context, name, home string) (*benchChild, error) {
	args := []string{"bench", benchNodeWord, "--home", home, "--ephemeral"}
	if b.cfg.profileDir != "" {
		args = append(args, "--cpuprofile", filepath.Join(b.cfg.profileDir, name+".pprof"))
	}
	if b.env.LogLevel != "" {
		args = append(args, "--log-level", b.env.LogLevel)
	}
	c, err := startBenchChild(ctx, name, b.exe, args...)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	return c, nil
}

// stopAll stops every child still running and notes the nodes' memory.
func (b *bench) stopAll() error {
	var errs []error
	for _, c := range b.children {
		if err := c.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	b.noteRSS()
	return errors.Join(errs...)
}

// noteRSS puts the peak resident size of the node processes in the report.
func (b *bench) noteRSS() {
	for _, c := range b.children {
		if strings.HasPrefix(c.name, "baseline") || c.name == "loader" {
			continue
		}
		mb := round(float64(c.peakKB.Load())/1024, 1)
		b.rep.RSSMBNode[c.name] = mb
		b.rep.RSSMB = max(b.rep.RSSMB, mb)
		b.rep.AnonMB = max(b.rep.AnonMB, round(float64(c.peakAnonKB.Load())/1024, 1))
	}
}

// baseline measures bare gossipsub with default settings: as many
// processes as nodes, the same star of connections to the publisher.
func (b *bench) baseline(ctx context.Context) error {
	b.progress("baseline: starting %d bare gossipsub processes", b.cfg.nodes)
	var hosts []*benchChild
	defer func() {
		for _, c := range hosts {
			_ = c.stop()
		}
	}()
	for i := range b.cfg.nodes {
		c, err := startBenchChild(ctx, fmt.Sprintf("baseline%d", i), b.exe, "bench", benchBaselineWord)
		if err != nil {
			return err
		}
		hosts = append(hosts, c)
		b.children = append(b.children, c)
	}
	const topic = "/sangsaeng-bench/baseline"
	for _, c := range hosts {
		if _, err := c.call(ctx, benchMsg{Op: "join", Channel: topic}); err != nil {
			return err
		}
	}
	pub, receivers := hosts[0], hosts[1:]
	for _, c := range receivers {
		if _, err := c.call(ctx, benchMsg{Op: "connect", Addrs: pub.hello.Addrs}); err != nil {
			return err
		}
	}
	if err := b.warmUp(ctx, pub, receivers, "arm-count"); err != nil {
		return err
	}
	// Gossipsub with its default queues drops what it cannot keep up with,
	// and drops more under a burst than under a steady load, so its
	// capacity is found with a ramp of steady rates: each step publishes
	// for a second, 1.3 times faster than the one before, until what is
	// delivered grows no more. Then the same burst as the throughput phase,
	// for the record. Where the first step loses most of what it sent (a
	// slow or busy machine), the ramp starts again at half the rate.
	//
	// A receiver waits for a message at most 20 s beyond the time the step
	// takes to publish: gossipsub may drop every one of them, and then
	// there is nothing to be idle after.
	b.rep.BaselineSteps = []benchStep{}
	var best benchStep
	rate, held := 4000.0, false // held: a step delivered half of what it sent
	for step := 1; step <= 12; step++ {
		rate = math.Round(rate)
		count := min(int(rate), b.cfg.records) // a second, or --records
		tag := fmt.Sprintf("r%d", step)
		limit := time.Duration(float64(count)/rate*float64(time.Second)) + 20*time.Second
		res, err := b.measure(ctx, pub, receivers,
			benchMsg{Op: "arm-count", Tag: tag, Count: count, IdleMs: time.Second.Milliseconds(), TimeoutMs: limit.Milliseconds()},
			benchMsg{Op: "publish", Tag: tag, Count: count, Payload: b.cfg.payload, Rate: rate})
		if err != nil {
			return err
		}
		st := benchStep{Offered: rate, Sent: count, Delivered: res.delivered, PerSec: round(res.perSec, 1)}
		b.rep.BaselineSteps = append(b.rep.BaselineSteps, st)
		b.progress("baseline: at %.0f messages/s offered, %.0f/s delivered (%d of %d)", rate, res.perSec, res.delivered, count)
		grew := st.PerSec > best.PerSec*1.05
		if st.PerSec > best.PerSec {
			best = st
		}
		if res.delivered < count/2 {
			if !held && rate > 250 {
				rate /= 2
				continue
			}
			break
		}
		held = true
		if !grew {
			break
		}
		rate *= 1.3
	}
	b.rep.BaselineSteadyPerSec = pointer(best.PerSec)
	b.rep.BaselineSteadyOffered = pointer(best.Offered)
	b.rep.BaselineSteadyLost = pointer(best.Sent - best.Delivered)
	b.rep.BaselineSteadySent = pointer(best.Sent)

	b.progress("baseline: a burst of %d messages from %d goroutines", b.cfg.records, b.cfg.publishers)
	res, err := b.measure(ctx, pub, receivers,
		benchMsg{Op: "arm-count", Tag: "t", Count: b.cfg.records, IdleMs: time.Second.Milliseconds(),
			TimeoutMs: (30*time.Second + time.Duration(b.cfg.records)*2*time.Millisecond).Milliseconds()},
		benchMsg{Op: "publish", Tag: "t", Count: b.cfg.records, Payload: b.cfg.payload, Workers: b.cfg.publishers})
	if err != nil {
		return err
	}
	b.rep.Records = b.cfg.records
	b.rep.Publishers = b.cfg.publishers
	b.rep.BaselinePerSec = pointer(round(res.perSec, 1))
	b.rep.BaselineDelivered = pointer(min(res.delivered, b.cfg.records))
	b.rep.BaselineLost = pointer(max(b.cfg.records-res.delivered, 0))
	b.progress("baseline: in a burst %.0f messages/s delivered, %d of %d lost; %.0f/s at best at a steady rate",
		res.perSec, b.cfg.records-res.delivered, b.cfg.records, best.PerSec)
	for _, c := range hosts {
		if err := c.stop(); err != nil {
			return err
		}
	}
	return nil
}

// setup starts the node processes, founds a channel on node 0 with the
// others as members, and has each of them join it with an invite.
func (b *bench) setup(ctx context.Context) error {
	b.progress("starting %d nodes", b.cfg.nodes)
	var ids []string
	for i := range b.cfg.nodes {
		name := fmt.Sprintf("node%d", i)
		c, err := b.startNode(ctx, name, filepath.Join(b.root, name))
		if err != nil {
			return err
		}
		if _, err := c.call(ctx, benchMsg{Op: "start"}); err != nil {
			return err
		}
		b.nodes = append(b.nodes, c)
		ids = append(ids, c.hello.Peer)
	}
	pub := b.nodes[0]
	r, err := pub.call(ctx, benchMsg{Op: "create", Name: "bench", Peers: ids[1:]})
	if err != nil {
		return err
	}
	b.channel = r.Channel
	errc := make(chan error, len(b.nodes))
	for _, c := range b.nodes[1:] {
		inv, err := pub.call(ctx, benchMsg{Op: "invite", Channel: b.channel, Peer: c.hello.Peer})
		if err != nil {
			return err
		}
		go func() {
			_, err := c.call(ctx, benchMsg{Op: "join", Code: inv.Code})
			errc <- err
		}()
	}
	for range b.nodes[1:] {
		if err := <-errc; err != nil {
			return err
		}
	}
	return b.warmUp(ctx, pub, b.nodes[1:], "arm-latency")
}

// warmUp publishes a probe every 100 ms until every receiver got one over
// gossip (within 250 ms of its sending), so that meshes are formed.
func (b *bench) warmUp(ctx context.Context, pub *benchChild, receivers []*benchChild, arm string) error {
	probe := benchMsg{Op: arm, Channel: b.channel, Tag: "w", Count: 1, MaxMs: 250, TimeoutMs: 30000}
	done := make(chan error, len(receivers))
	for _, c := range receivers {
		h, err := c.call(ctx, probe)
		if err != nil {
			return err
		}
		go func() {
			r, err := c.call(ctx, benchMsg{Op: "await", Handle: h.Handle})
			if err == nil && !r.Done {
				err = fmt.Errorf("%s received no gossip from %s within 30 s", c.name, pub.name)
			}
			done <- err
		}()
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for left := len(receivers); left > 0; {
		if _, err := pub.call(ctx, benchMsg{Op: "publish", Channel: b.channel, Tag: "w", Count: 1, Payload: b.cfg.payload, Workers: 1}); err != nil {
			return err
		}
	wait:
		for {
			select {
			case err := <-done:
				if err != nil {
					return err
				}
				if left--; left == 0 {
					break wait
				}
			case <-t.C:
				break wait
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// measured is what one saturating phase gave: the slowest receiver's rate
// and the fewest records delivered to a receiver.
type measured struct {
	perSec    float64
	delivered int
	published benchMsg
}

// measure arms every receiver, has pub publish, and waits for the
// receivers. A receiver's rate is what it got over the time from the first
// publish to the last arrival.
func (b *bench) measure(ctx context.Context, pub *benchChild, receivers []*benchChild, arm, publish benchMsg) (measured, error) {
	handles := make([]int, len(receivers))
	for i, c := range receivers {
		r, err := c.call(ctx, arm)
		if err != nil {
			return measured{}, err
		}
		handles[i] = r.Handle
	}
	p, err := pub.call(ctx, publish)
	if err != nil {
		return measured{}, err
	}
	m := measured{perSec: math.Inf(1), delivered: math.MaxInt, published: p}
	for i, c := range receivers {
		r, err := c.call(ctx, benchMsg{Op: "await", Handle: handles[i]})
		if err != nil {
			return measured{}, err
		}
		rate := 0.0
		if r.Count > 0 && r.Last > p.First {
			rate = float64(r.Count) / (float64(r.Last-p.First) / 1e9)
		}
		m.perSec = min(m.perSec, rate)
		m.delivered = min(m.delivered, r.Count)
	}
	return m, nil
}

// throughput has node 0 publish records as fast as it can and measures how
// fast they are stored at every partner.
func (b *bench) throughput(ctx context.Context) error {
	pub := b.nodes[0]
	h, err := pub.call(ctx, benchMsg{Op: "head", Channel: b.channel})
	if err != nil {
		return err
	}
	b.progress("throughput: publishing %d records of about %d bytes from %s with %d goroutines", b.cfg.records, b.cfg.payload, pub.name, b.cfg.publishers)
	res, err := b.measure(ctx, pub, b.nodes[1:],
		benchMsg{Op: "arm-head", Channel: b.channel, Peer: pub.hello.Peer, Head: h.Head + uint64(b.cfg.records), IdleMs: b.cfg.idle.Milliseconds()},
		benchMsg{Op: "publish", Channel: b.channel, Tag: "t", Count: b.cfg.records, Payload: b.cfg.payload, Workers: b.cfg.publishers})
	if err != nil {
		return err
	}
	p := res.published
	b.rep.Records = b.cfg.records
	b.rep.Publishers = b.cfg.publishers
	b.rep.DeliveredPerSec = pointer(round(res.perSec, 1))
	b.rep.Delivered = pointer(min(res.delivered, b.cfg.records))
	b.rep.Lost = pointer(max(b.cfg.records-res.delivered, 0))
	if p.Last > p.First {
		b.rep.PublishedPerSec = pointer(round(float64(p.Count)/(float64(p.Last-p.First)/1e9), 1))
	}
	if b.rep.BaselinePerSec != nil && *b.rep.BaselinePerSec > 0 {
		b.rep.Ratio = pointer(round(res.perSec / *b.rep.BaselinePerSec, 4))
	}
	if b.rep.BaselineSteadyPerSec != nil && *b.rep.BaselineSteadyPerSec > 0 {
		b.rep.RatioSteady = pointer(round(res.perSec / *b.rep.BaselineSteadyPerSec, 4))
	}
	b.progress("throughput: %.0f records/s stored at the partners, %d of %d delivered", res.perSec, *b.rep.Delivered, b.cfg.records)
	return nil
}

// counters returns every node's metrics, by node.
func (b *bench) counters(ctx context.Context) (map[string]map[string]float64, error) {
	out := map[string]map[string]float64{}
	for _, c := range b.nodes {
		select {
		case <-c.done: // stopped by a phase (startup)
			continue
		default:
		}
		r, err := c.call(ctx, benchMsg{Op: "metrics"})
		if err != nil {
			return nil, err
		}
		out[c.name] = r.Metrics
	}
	return out, nil
}

// latency has node 0 publish at fixed rates, --rate and then each of
// --curve, and collects, at every partner, the time from the call to
// Publish to the record being stored. The p50_ms... figures are those at
// --rate; latency_curve has every rate.
func (b *bench) latency(ctx context.Context) error {
	for i, rate := range b.cfg.curve {
		if i > 0 {
			b.settle(ctx)
		}
		l, err := b.latencyAt(ctx, rate, fmt.Sprintf("l%d", i))
		if err != nil {
			return err
		}
		b.rep.LatencyCurve = append(b.rep.LatencyCurve, l)
		if i == 0 {
			b.rep.Rate = rate
			b.rep.LatencyRecords = l.Records
			b.rep.LatencyReceived = pointer(l.Received)
			b.rep.P50Ms, b.rep.P90Ms, b.rep.P99Ms, b.rep.MaxMs = pointer(l.P50Ms), pointer(l.P90Ms), pointer(l.P99Ms), pointer(l.MaxMs)
		}
	}
	return nil
}

// latencyAt measures latency at one rate.
func (b *bench) latencyAt(ctx context.Context, rate float64, tag string) (benchLatency, error) {
	pub := b.nodes[0]
	b.progress("latency: publishing %d records at %.0f per second", b.cfg.latencyRecords, rate)
	var lat []float64
	handles := make([]int, len(b.nodes)-1)
	for i, c := range b.nodes[1:] {
		r, err := c.call(ctx, benchMsg{Op: "arm-latency", Channel: b.channel, Tag: tag, Count: b.cfg.latencyRecords, IdleMs: b.cfg.idle.Milliseconds()})
		if err != nil {
			return benchLatency{}, err
		}
		handles[i] = r.Handle
	}
	if _, err := pub.call(ctx, benchMsg{Op: "publish", Channel: b.channel, Tag: tag, Count: b.cfg.latencyRecords, Payload: b.cfg.payload, Rate: rate}); err != nil {
		return benchLatency{}, err
	}
	received := math.MaxInt
	for i, c := range b.nodes[1:] {
		r, err := c.call(ctx, benchMsg{Op: "await", Handle: handles[i]})
		if err != nil {
			return benchLatency{}, err
		}
		lat = append(lat, r.Latencies...)
		received = min(received, r.Count)
	}
	if len(lat) == 0 {
		return benchLatency{}, fmt.Errorf("no partner received any record at %.0f/s", rate)
	}
	slices.Sort(lat)
	l := benchLatency{
		Rate: rate, Records: b.cfg.latencyRecords, Received: received,
		P50Ms: round(percentile(lat, 50), 3), P90Ms: round(percentile(lat, 90), 3),
		P99Ms: round(percentile(lat, 99), 3), MaxMs: round(lat[len(lat)-1], 3),
	}
	b.progress("latency: at %.0f/s p50 %.2f ms, p99 %.2f ms", rate, l.P50Ms, l.P99Ms)
	return l, nil
}

// catchup measures a member catching up after a restart. It stops node 1
// (the member) and node 0 (the publisher); a loader process opens node 0's
// home and writes the waiting records into its store, as node 0's own,
// without gossip; node 0 restarts on its home and port, then node 1 on its
// home, and the bench measures how fast node 1 stores the records, from its
// start to the last one. The loader is scaffolding, so its memory is left
// out of rss_mb. With more than two nodes, the other members catch up from
// node 0 at the same time.
func (b *bench) catchup(ctx context.Context) error {
	pub, member := b.nodes[0], b.nodes[1]
	b.progress("catch-up: stopping %s and %s", member.name, pub.name)
	if err := member.stop(); err != nil {
		return err
	}
	if err := pub.stop(); err != nil {
		return err
	}
	b.progress("catch-up: writing %d records into %s's store", b.cfg.catchupRecords, pub.name)
	loader, err := b.startNode(ctx, "loader", filepath.Join(b.root, "node0"))
	if err != nil {
		return err
	}
	l, err := loader.call(ctx, benchMsg{Op: "load", Channel: b.channel, Count: b.cfg.catchupRecords, Payload: b.cfg.payload, Batch: b.cfg.loadBatch})
	if err != nil {
		return err
	}
	if err := loader.stop(); err != nil {
		return err
	}
	b.rep.LoadSec = pointer(round(float64(l.Last-l.First)/1e9, 2))
	b.rep.LoadBatch = b.cfg.loadBatch
	b.progress("catch-up: wrote them in %.1f s; restarting %s, then %s", *b.rep.LoadSec, pub.name, member.name)
	if pub, err = b.startNode(ctx, "node0-restart", filepath.Join(b.root, "node0")); err != nil {
		return err
	}
	b.nodes[0] = pub
	if _, err := pub.call(ctx, benchMsg{Op: "start"}); err != nil {
		return err
	}
	c, err := b.startNode(ctx, member.name+"-restart", filepath.Join(b.root, member.name))
	if err != nil {
		return err
	}
	b.nodes[1] = c
	idle := max(b.cfg.idle, 10*time.Second)
	a, err := c.call(ctx, benchMsg{Op: "arm-head", Channel: b.channel, Peer: pub.hello.Peer, Head: l.Head, IdleMs: idle.Milliseconds()})
	if err != nil {
		return err
	}
	s, err := c.call(ctx, benchMsg{Op: "start"})
	if err != nil {
		return err
	}
	r, err := c.call(ctx, benchMsg{Op: "await", Handle: a.Handle})
	if err != nil {
		return err
	}
	if !r.Done {
		return fmt.Errorf("%s caught up on %d of %d records, then nothing came for %s", c.name, r.Count, b.cfg.catchupRecords, idle)
	}
	secs := float64(r.Last-s.First) / 1e9
	b.rep.CatchupRecords = b.cfg.catchupRecords
	b.rep.CatchupReceived = pointer(r.Count)
	b.rep.CatchupSec = pointer(round(secs, 3))
	b.rep.CatchupPerSec = pointer(round(float64(r.Count)/secs, 1))
	b.progress("catch-up: %d records in %.2f s after the restart", r.Count, secs)
	return nil
}

// startup measures how long a node holding startupRecords takes to
// start. It stops every node, has a loader write node 1's own records into
// its store until it holds that many (signed as catch-up's are), and
// starts node 1 again, timing from the start of its process to the node
// started. The other nodes stay down: they would only fetch the loaded
// records from it once it runs, which is catch-up's measure, not this.
func (b *bench) startup(ctx context.Context) error {
	c := b.nodes[1]
	h, err := c.call(ctx, benchMsg{Op: "head", Channel: b.channel, Peer: c.hello.Peer})
	if err != nil {
		return err
	}
	home := filepath.Join(b.root, "node1")
	for _, n := range b.nodes {
		if err := n.stop(); err != nil {
			return err
		}
	}
	b.rep.StartupRecords = b.cfg.startupRecords
	if more := b.cfg.startupRecords - h.Count; more > 0 {
		b.progress("startup: writing %d records into %s's store, to hold %d", more, c.name, b.cfg.startupRecords)
		loader, err := b.startNode(ctx, "loader", home)
		if err != nil {
			return err
		}
		l, err := loader.call(ctx, benchMsg{Op: "load", Channel: b.channel, Count: more, Payload: b.cfg.payload, Batch: b.cfg.loadBatch})
		if err != nil {
			return err
		}
		if err := loader.stop(); err != nil {
			return err
		}
		b.rep.StartupLoadSec = pointer(round(float64(l.Last-l.First)/1e9, 1))
		b.progress("startup: wrote them in %.1f s", *b.rep.StartupLoadSec)
	}
	start := time.Now()
	c, err = b.startNode(ctx, "node1-startup", home)
	if err != nil {
		return err
	}
	b.nodes[1] = c
	if _, err := c.call(ctx, benchMsg{Op: "start"}); err != nil {
		return err
	}
	took := time.Since(start)
	h, err = c.call(ctx, benchMsg{Op: "head", Channel: b.channel, Peer: c.hello.Peer})
	if err != nil {
		return err
	}
	b.rep.StartupHeld = pointer(h.Count)
	b.rep.StartupMs = pointer(round(float64(took.Microseconds())/1000, 1))
	if c.hello.Last > c.hello.First {
		b.rep.StartupOpenMs = pointer(round(float64(c.hello.Last-c.hello.First)/1e6, 1))
	}
	b.progress("startup: %s holding %d records started in %.0f ms", c.name, h.Count, *b.rep.StartupMs)
	return nil
}

// settle waits until the node processes are quiet, using under 5 % of a
// core each over half a second, so that a phase does not measure the
// background work (compactions, syncs) left by the one before. It gives up
// after 30 s and returns how long it waited.
func (b *bench) settle(ctx context.Context) time.Duration {
	start := time.Now()
	const window = 500 * time.Millisecond
	for time.Since(start) < 30*time.Second {
		before := make([]time.Duration, len(b.nodes))
		for i, c := range b.nodes {
			t, ok := c.cpuTime()
			if !ok {
				return 0
			}
			before[i] = t
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(window):
		}
		quiet := true
		for i, c := range b.nodes {
			t, _ := c.cpuTime()
			quiet = quiet && t-before[i] < window/20
		}
		if quiet {
			break
		}
	}
	return time.Since(start)
}

// percentile returns the p-th percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// round rounds v to digits decimal places.
func round(v float64, digits int) float64 {
	f := math.Pow(10, float64(digits))
	return math.Round(v*f) / f
}

// pointer returns a pointer to a copy of v, for the report's optional figures.
func pointer[T any](v T) *T { return &v }

// print writes the report as a table for people.
func (r *benchReport) print(env *Env) error {
	w := env.Stdout
	fmt.Fprintf(w, "sangsaeng bench: %d nodes on loopback TCP, records of about %d bytes\n\n", r.Nodes, r.PayloadBytes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	num := func(v float64) string { return groupDigits(strconv.FormatFloat(v, 'f', 0, 64)) }
	if r.BaselinePerSec != nil {
		fmt.Fprintf(tw, "baseline\t%s msg/s\tbare gossipsub, default settings, the same burst of %d from %d goroutines: %d delivered, %d lost\n",
			num(*r.BaselinePerSec), r.Records, r.Publishers, *r.BaselineDelivered, *r.BaselineLost)
		fmt.Fprintf(tw, "\t%s msg/s\tat best at a steady rate: %d lost of %d offered at %s/s\n",
			num(*r.BaselineSteadyPerSec), *r.BaselineSteadyLost, *r.BaselineSteadySent, num(*r.BaselineSteadyOffered))
	}
	if r.DeliveredPerSec != nil {
		fmt.Fprintf(tw, "delivered\t%s records/s\tstored at every partner: %d of %d delivered, %d lost; published at %s/s\n",
			num(*r.DeliveredPerSec), *r.Delivered, r.Records, *r.Lost, num(deref(r.PublishedPerSec)))
	}
	if c := r.Counters[phaseThroughput]; c != nil {
		var served, dropped, dup float64
		for _, m := range c {
			for k, v := range m {
				switch {
				case k == "sangsaeng_sync_served_records_total":
					served += v
				case strings.HasPrefix(k, "sangsaeng_pubsub_dropped_total"):
					dropped += v
				case k == "sangsaeng_records_duplicate_total":
					dup += v
				}
			}
		}
		fmt.Fprintf(tw, "\t\tof them %s sent again by sync; %s gossip messages dropped by queues; %s duplicates\n",
			num(served), num(dropped), num(dup))
	}
	if r.Ratio != nil {
		fmt.Fprintf(tw, "ratio\t%.2f\tdelivered / baseline (the same burst)\n", *r.Ratio)
		if r.RatioSteady != nil {
			fmt.Fprintf(tw, "\t%.2f\tdelivered / baseline at its best steady rate\n", *r.RatioSteady)
		}
	}
	if r.P50Ms != nil {
		fmt.Fprintf(tw, "latency\tp50 %.2f ms, p99 %.2f ms\tpublish to stored at a partner at %s records/s (p90 %.2f, max %.2f; %d of %d received)\n",
			*r.P50Ms, *r.P99Ms, num(r.Rate), *r.P90Ms, *r.MaxMs, *r.LatencyReceived, r.LatencyRecords)
	}
	for _, l := range r.LatencyCurve[min(1, len(r.LatencyCurve)):] {
		fmt.Fprintf(tw, "\tp50 %.2f ms, p99 %.2f ms\tat %s records/s (p90 %.2f, max %.2f; %d of %d received)\n",
			l.P50Ms, l.P99Ms, num(l.Rate), l.P90Ms, l.MaxMs, l.Received, l.Records)
	}
	if r.CatchupPerSec != nil {
		fmt.Fprintf(tw, "catch-up\t%s records/s\t%d records through sync in %.2f s after a restart, %d to a signature (writing them took %.1f s)\n",
			num(*r.CatchupPerSec), *r.CatchupReceived, *r.CatchupSec, r.LoadBatch, *r.LoadSec)
	}
	if r.StartupMs != nil {
		fmt.Fprintf(tw, "start-up\t%s ms\ta node holding %s records, from its process's start to started (%s ms opening the store and reading its state)\n",
			num(*r.StartupMs), num(float64(*r.StartupHeld)), num(deref(r.StartupOpenMs)))
	}
	if len(r.RSSMBNode) > 0 {
		var per []string
		for _, name := range slices.Sorted(maps.Keys(r.RSSMBNode)) {
			per = append(per, fmt.Sprintf("%s %.0f", name, r.RSSMBNode[name]))
		}
		fmt.Fprintf(tw, "memory\t%.0f MB\tlargest peak resident size of a node process (%s); at most %.0f MB not file-backed\n",
			r.RSSMB, strings.Join(per, ", "), r.AnonMB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%.0f s in all\n", r.ElapsedSec)
	return err
}

// deref returns *p, or 0 for nil.
func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// groupDigits puts thousands separators in a decimal integer.
func groupDigits(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
