package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The bench drives its child processes (bench_node.go, bench_baseline.go)
// with JSON lines: the child writes a hello line (ID 0) when it is ready,
// then answers each request line with one reply line of the same ID, in any
// order, as each request runs on its own. A child exits after an "exit"
// request, or when its stdin ends because the bench is gone.

// Words after `sangsaeng bench` that run a child instead of the bench.
const (
	benchNodeWord     = "node-child"
	benchBaselineWord = "baseline-child"
)

// benchMsg is one line between the bench and a child, in either direction.
// Times are unix nanoseconds of the machine's clock, which every process on
// it shares.
type benchMsg struct {
	ID        int       `json:"id"`
	Op        string    `json:"op,omitempty"`
	Error     string    `json:"error,omitempty"`
	Peer      string    `json:"peer,omitempty"`
	Addrs     []string  `json:"addrs,omitempty"`
	Peers     []string  `json:"peers,omitempty"`
	Name      string    `json:"name,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Code      string    `json:"code,omitempty"`
	Tag       string    `json:"tag,omitempty"`
	Count     int       `json:"count,omitempty"`
	Payload   int       `json:"payload,omitempty"`
	Workers   int       `json:"workers,omitempty"`
	Batch     int       `json:"batch,omitempty"` // records to a signature, for load
	Rate      float64   `json:"rate,omitempty"`
	Head      uint64    `json:"head,omitempty"`
	MaxMs     float64   `json:"maxMs,omitempty"`
	IdleMs    int64     `json:"idleMs,omitempty"`
	TimeoutMs int64     `json:"timeoutMs,omitempty"`
	Handle    int       `json:"handle,omitempty"`
	First     int64     `json:"first,omitempty"`
	Last      int64     `json:"last,omitempty"`
	Done      bool      `json:"done,omitempty"`
	Errors    int       `json:"errors,omitempty"`
	Latencies []float64 `json:"latencies,omitempty"`
	// Metrics are a node's counters, by Prometheus sample name with labels.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// benchFail returns a reply carrying err.
func benchFail(err error) benchMsg { return benchMsg{Error: err.Error()} }

// benchConn writes lines to the bench; it is safe for concurrent use.
type benchConn struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// ack answers the exit request, if one came, with err.
func (c *benchConn) ack(exit *benchMsg, err error) {
	if exit == nil {
		return
	}
	r := benchMsg{ID: exit.ID}
	if err != nil {
		r.Error = err.Error()
	}
	c.send(r)
}

// send writes m as one line.
func (c *benchConn) send(m benchMsg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.enc.Encode(m) // the bench is gone: stdin ends next
}

// serveBench sends hello, then runs every request read from in with handle,
// each in its own goroutine, until in ends or an "exit" request comes. It
// then cancels the requests in flight, waits for them a little, and returns
// the exit request (nil when in ended) and the connection to answer it on.
func serveBench(ctx context.Context, in io.Reader, out io.Writer, hello benchMsg, handle func(context.Context, benchMsg) benchMsg) (*benchMsg, *benchConn) {
	conn := &benchConn{enc: json.NewEncoder(out)}
	conn.send(hello)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var exit *benchMsg
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var m benchMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			conn.send(benchMsg{Error: fmt.Sprintf("bad request: %v", err)})
			continue
		}
		if m.Op == "exit" {
			exit = &m
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := handle(ctx, m)
			r.ID = m.ID
			conn.send(r)
		}()
	}
	if exit == nil {
		// The bench is gone. Whatever happens while the child shuts down,
		// it must not outlive the bench for long.
		time.AfterFunc(30*time.Second, func() { os.Exit(1) })
	}
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	return exit, conn
}

// benchText returns a record's or message's text: the send time, the tag and
// the index, padded with 'x' to size bytes.
func benchText(tag string, i, size int) string {
	head := strconv.FormatInt(time.Now().UnixNano(), 10) + " " + tag + " " + strconv.Itoa(i) + " "
	if len(head) >= size {
		return head
	}
	var b strings.Builder
	b.Grow(size)
	b.WriteString(head)
	for b.Len() < size {
		b.WriteByte('x')
	}
	return b.String()
}

// parseBenchText returns the send time and tag of a text made by benchText.
func parseBenchText(s string) (sent int64, tag string, ok bool) {
	ns, rest, ok := strings.Cut(s, " ")
	if !ok {
		return 0, "", false
	}
	tag, _, ok = strings.Cut(rest, " ")
	if !ok {
		return 0, "", false
	}
	sent, err := strconv.ParseInt(ns, 10, 64)
	return sent, tag, err == nil
}

// publishLoad calls pub for i from 0 to count-1: as fast as workers
// goroutines can when rate is 0, else at rate calls per second, each call on
// time in its own goroutine (open loop, so a slow call does not delay the
// next). It replies with the time of the first call, the end of the last one,
// how many succeeded and how many failed, with the first error.
func publishLoad(ctx context.Context, count, workers int, rate float64, pub func(ctx context.Context, i int) error) benchMsg {
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		firstErr   error
		last       atomic.Int64
	)
	call := func(i int) {
		if err := pub(ctx, i); err != nil {
			if failed.Add(1) == 1 {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		} else {
			ok.Add(1)
		}
		now := time.Now().UnixNano()
		for {
			l := last.Load()
			if now <= l || last.CompareAndSwap(l, now) {
				break
			}
		}
	}
	first := time.Now()
	var wg sync.WaitGroup
	if rate <= 0 {
		var next atomic.Int64
		for range max(workers, 1) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= count {
						return
					}
					call(i)
				}
			}()
		}
	} else {
		// At most this many calls in flight; beyond it the publisher is
		// far behind the rate anyway.
		sem := make(chan struct{}, 4096)
		interval := float64(time.Second) / rate
	loop:
		for i := range count {
			if d := time.Until(first.Add(time.Duration(float64(i) * interval))); d > 0 {
				select {
				case <-ctx.Done():
					break loop
				case <-time.After(d):
				}
			}
			select {
			case <-ctx.Done():
				break loop
			case sem <- struct{}{}:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				call(i)
			}()
		}
	}
	wg.Wait()
	r := benchMsg{First: first.UnixNano(), Last: last.Load(), Count: int(ok.Load()), Errors: int(failed.Load())}
	if firstErr != nil {
		r.Error = fmt.Sprintf("%d of %d publishes failed; the first: %v", r.Errors, count, firstErr)
	}
	if ctx.Err() != nil && r.Error == "" {
		r.Error = ctx.Err().Error()
	}
	return r
}

// tally counts the messages of one tag a child receives, with their
// latencies, until it has want of them. With maxMs set it is a probe: it is
// done at the first message whose latency is below maxMs.
type tally struct {
	tag   string
	want  int
	maxMs float64
	keep  bool // keep every latency

	mu     sync.Mutex
	n      int
	first  int64
	last   int64
	lat    []float64
	done   chan struct{}
	closed bool
}

// newTally returns a tally of the tag, count and probe limit of request m.
func newTally(m benchMsg, keep bool) *tally {
	return &tally{tag: m.Tag, want: m.Count, maxMs: m.MaxMs, keep: keep, done: make(chan struct{})}
}

// add counts a message of the tally's tag sent at sent (unix ns).
func (t *tally) add(sent int64) {
	now := time.Now().UnixNano()
	lat := float64(now-sent) / 1e6
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if t.maxMs > 0 && lat >= t.maxMs {
		return
	}
	t.n++
	if t.first == 0 {
		t.first = now
	}
	t.last = now
	if t.keep {
		t.lat = append(t.lat, lat)
	}
	if t.maxMs > 0 || t.n >= t.want {
		t.closed = true
		close(t.done)
	}
}

// wait waits until the tally is complete, no message came for idle (once
// one came), timeout passed, or ctx ended, and replies with the count, the
// times of the first and last message and, when kept, the latencies.
func (t *tally) wait(ctx context.Context, idle, timeout time.Duration) benchMsg {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	result := func() benchMsg {
		t.mu.Lock()
		defer t.mu.Unlock()
		done := t.closed
		t.closed = true
		return benchMsg{Count: t.n, First: t.first, Last: t.last, Done: done, Latencies: t.lat}
	}
	for {
		select {
		case <-t.done:
			return result()
		case <-ctx.Done():
			r := result()
			r.Error = ctx.Err().Error()
			return r
		case <-deadline.C:
			return result()
		case <-tick.C:
			t.mu.Lock()
			last := t.last
			t.mu.Unlock()
			if last != 0 && idle > 0 && time.Since(time.Unix(0, last)) > idle {
				return result()
			}
		}
	}
}

// arms holds what a child was asked to watch for, until it is awaited.
type arms struct {
	mu   sync.Mutex
	next int
	m    map[int]chan benchMsg
}

// arm runs f in the background and returns the handle that await takes.
func (a *arms) arm(ctx context.Context, f func(context.Context) benchMsg) int {
	c := make(chan benchMsg, 1)
	a.mu.Lock()
	if a.m == nil {
		a.m = map[int]chan benchMsg{}
	}
	a.next++
	h := a.next
	a.m[h] = c
	a.mu.Unlock()
	go func() { c <- f(ctx) }()
	return h
}

// await returns the result of an armed watch.
func (a *arms) await(ctx context.Context, h int) benchMsg {
	a.mu.Lock()
	c := a.m[h]
	delete(a.m, h)
	a.mu.Unlock()
	if c == nil {
		return benchMsg{Error: fmt.Sprintf("no armed watch %d", h)}
	}
	select {
	case r := <-c:
		return r
	case <-ctx.Done():
		return benchFail(ctx.Err())
	}
}

// millis turns milliseconds from a request into a duration, or def when 0.
func millis(ms int64, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return time.Duration(ms) * time.Millisecond
}
