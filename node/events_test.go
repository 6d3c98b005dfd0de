package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// arrivalOrder returns every record n holds, in the order of its arrival
// index, as CIDs with their event ids.
func arrivalOrder(t *testing.T, n *Node) (ids []uint64, cids []string) {
	t.Helper()
	var after uint64
	for {
		recs, next, err := n.store.Arrivals(after, cid.Undef, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 && next == after {
			return ids, cids
		}
		for _, a := range recs {
			ids = append(ids, a.Seq)
			cids = append(cids, a.Record.CID.String())
		}
		after = next
	}
}

// follower collects what a watch of the event stream gets.
type follower struct {
	mu   sync.Mutex
	ids  []string
	cids []string
	kind map[string]int
}

func (f *follower) add(id string, r api.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, id)
	f.cids = append(f.cids, r.CID)
	if f.kind == nil {
		f.kind = map[string]int{}
	}
	f.kind[r.Kind]++
}

func (f *follower) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kind[kind]
}

func (f *follower) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ids) == 0 {
		return ""
	}
	return f.ids[len(f.ids)-1]
}

// eventNumber takes the arrival number out of an event id, checking its
// epoch.
func eventNumber(t *testing.T, n *Node, id string) uint64 {
	t.Helper()
	epoch, num, ok := strings.Cut(id, "-")
	if !ok || epoch != n.store.ArrivalEpoch() {
		t.Fatalf("event id %q is not of the store's epoch %s", id, n.store.ArrivalEpoch())
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		t.Fatalf("event id %q: %v", id, err)
	}
	return v
}

// check compares what the follower got with n's arrival order: every
// record, once, in order, with increasing ids.
func (f *follower) check(t *testing.T, n *Node) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ids, cids := arrivalOrder(t, n)
	nums := make([]uint64, len(f.ids))
	for i, id := range f.ids {
		nums[i] = eventNumber(t, n, id)
		if i > 0 && nums[i] <= nums[i-1] {
			t.Fatalf("event %d has id %s after %s", i, f.ids[i], f.ids[i-1])
		}
	}
	if len(f.cids) != len(cids) {
		t.Fatalf("the watch got %d records, the node holds %d", len(f.cids), len(cids))
	}
	for i := range cids {
		if f.cids[i] != cids[i] || nums[i] != ids[i] {
			t.Fatalf("event %d: id %s %s, the node's arrival %d is %s", i, f.ids[i], f.cids[i], ids[i], cids[i])
		}
	}
}

var errEnough = errors.New("enough")

// TestEventStreamResume: a client of B's event stream that disconnects
// and comes back with Last-Event-ID gets every record it missed, in
// order, then the new ones live: what it got in both sessions is exactly
// B's arrival order.
func TestEventStreamResume(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "x")
	h := newAPIHarness(t, b)
	c := api.NewClient(h.srv.URL, h.token)
	ctx := t.Context()
	publish := func(from, to int) {
		t.Helper()
		var last cid.Cid
		for i := from; i < to; i++ {
			s, err := a.Publish(ctx, ch, "note", map[string]any{"text": fmt.Sprint("note ", i)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			last = s.CID
		}
		waitFor(t, "B to hold note "+fmt.Sprint(to-1), 30*time.Second, func() bool { return has(b, last) })
	}
	publish(0, 20)

	// First session: from the start, stopped after 10 records.
	f := &follower{}
	err := c.Watch(ctx, api.WatchOptions{Since: "0"}, func(id string, r api.Record) error {
		f.add(id, r)
		if len(f.ids) == 10 {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("first watch: %v", err)
	}
	// Missed while away.
	publish(20, 50)

	// Second session: resumes after the last id, with the header a
	// browser's EventSource sends.
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, api.WatchOptions{Since: f.last()}, func(id string, r api.Record) error {
			f.add(id, r)
			return nil
		})
	}()
	waitFor(t, "the missed notes", 30*time.Second, func() bool { return f.count("note") == 50 })
	publish(50, 60) // live
	waitFor(t, "the live notes", 30*time.Second, func() bool { return f.count("note") == 60 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("second watch: %v", err)
	}
	f.check(t, b)

	// A bad id is refused with a message that says what an id is; an
	// id of another numbering (a store rebuilt since), or beyond the last
	// number (a store restored from an older backup), with what to do.
	status, e, _ := h.do(t, "GET", "/v1/events?since=yesterday", nil)
	if status != http.StatusBadRequest || e.Code != api.CodeBadRequest {
		t.Fatalf("since=yesterday: %d %+v", status, e)
	}
	for _, id := range []string{"0123456789abcdef-5", fmt.Sprintf("%s-%d", b.store.ArrivalEpoch(), b.store.LastArrival()+1)} {
		status, e, _ = h.do(t, "GET", "/v1/events?since="+id, nil)
		if status != http.StatusConflict || e.Code != api.CodeStaleEventID || !strings.Contains(e.Message, "since=0") {
			t.Fatalf("since=%s: %d %+v", id, status, e)
		}
	}
}

// TestEventStreamLiveResume: a watch that starts with the next record and
// loses its connection before any record came resumes from where it
// started, not from whatever is the next record when it is back: the
// records stored while it was away reach it.
func TestEventStreamLiveResume(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "x")
	h := newAPIHarness(t, b)
	c := api.NewClient(h.srv.URL, h.token)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &follower{}
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, api.WatchOptions{}, func(id string, r api.Record) error {
			f.add(id, r)
			return nil
		})
	}()
	waitFor(t, "the stream to wait for records", 10*time.Second, func() bool {
		b.events.mu.Lock()
		defer b.events.mu.Unlock()
		return b.events.wake != nil
	})
	h.srv.CloseClientConnections()
	for i := range 20 {
		if _, err := a.Publish(ctx, ch, "note", map[string]any{"text": fmt.Sprint("away ", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the notes stored while the watch was away", 30*time.Second, func() bool { return f.count("note") == 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestEventStreamReconnects: when the connection breaks under a watch
// (here the server drops every connection, again and again, while A
// publishes), Client.Watch resumes by itself after the last id it saw,
// and nothing is missed or repeated.
func TestEventStreamReconnects(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "x")
	h := newAPIHarness(t, b)
	c := api.NewClient(h.srv.URL, h.token)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &follower{}
	var mu sync.Mutex
	retries := 0
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, api.WatchOptions{Since: "0", Retrying: func(error, time.Duration) {
			mu.Lock()
			retries++
			mu.Unlock()
		}}, func(id string, r api.Record) error {
			f.add(id, r)
			return nil
		})
	}()
	const rounds, per = 6, 50
	const total = rounds * per
	for r := range rounds {
		for i := range per {
			if _, err := a.Publish(ctx, ch, "note", map[string]any{"text": fmt.Sprint("note ", r*per+i)}, nil); err != nil {
				t.Fatal(err)
			}
			if i == per/2 {
				h.srv.CloseClientConnections() // mid-stream
			}
		}
		waitFor(t, "the round's notes", 60*time.Second, func() bool { return f.count("note") == (r+1)*per })
	}
	waitFor(t, "every note through the broken connections", 60*time.Second, func() bool { return f.count("note") == total })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	mu.Lock()
	n := retries
	mu.Unlock()
	if n < rounds/2 {
		t.Fatalf("the watch resumed %d times for %d broken connections; the test proves little", n, rounds)
	}
	f.check(t, b)
	t.Logf("%d records through %d reconnections", total, n)
}

// TestWatcherEndsWhenBehind: an in-process watcher whose buffer is full
// is closed after the records it holds, never left to go on with a gap;
// the others keep theirs.
func TestWatcherEndsWhenBehind(t *testing.T) {
	h := newHub()
	slow, fast := h.subscribe(cid.Undef, 2), h.subscribe(cid.Undef, 8)
	recs := make([]*protocol.Signed, 3)
	for i := range recs {
		recs[i] = &protocol.Signed{CID: protocol.Sum([]byte(fmt.Sprint(i))), Record: &protocol.Record{Channel: protocol.Sum([]byte("ch"))}}
		h.publish(recs[i])
	}
	var got []cid.Cid
	for s := range slow.ch {
		got = append(got, s.CID)
	}
	if len(got) != 2 || got[0] != recs[0].CID || got[1] != recs[1].CID {
		t.Fatalf("the slow watcher got %v, want the first two records and then its end", got)
	}
	if len(fast.ch) != 3 {
		t.Fatalf("the other watcher holds %d records, want 3", len(fast.ch))
	}
	h.close()
}
