package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// lockedBuffer is a log sink tests read while the node writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// storeErrors reads sangsaeng_store_errors_total{op} from A's /metrics.
func storeErrors(t *testing.T, h *apiHarness, op string) int {
	t.Helper()
	code, _, body := h.do(t, http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^sangsaeng_store_errors_total\{op="` + op + `"\} (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no sangsaeng_store_errors_total for op %q", op)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return int(v)
}

func getStatus(t *testing.T, h *apiHarness) api.Status {
	t.Helper()
	code, e, body := h.do(t, http.MethodGet, "/v1/status", nil)
	if code != http.StatusOK {
		t.Fatalf("/v1/status: %d %s", code, e.Message)
	}
	var st api.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStoreFailureLoud: while A's store fails its writes, records B
// publishes reach A over gossip and are not held. Each failure is counted
// in /metrics, the node says it is unhealthy in /v1/status with the error,
// and the log has one line for the cause, not one per record. Once the
// store works again, sync brings every record.
func TestStoreFailureLoud(t *testing.T) {
	logs := &lockedBuffer{}
	a := startNodeLog(t, "A", slog.LevelInfo, nil, io.MultiWriter(logs, testLogWriter{t}))
	b := startNode(t, "B")
	ch := link(t, a, b, "ab")
	h := newAPIHarness(t, a)
	if st := getStatus(t, h); !st.Healthy || len(st.RecentErrors) != 0 {
		t.Fatalf("status before any failure: %+v", st)
	}
	fault := func() error { return fmt.Errorf("write records: %w", syscall.EIO) }
	a.putFault.Store(&fault)
	last := publishNotes(t, b, ch, 20, "while A's disk fails")
	waitFor(t, "A to count two gossip store failures", 20*time.Second, func() bool { return storeErrors(t, h, opGossip) >= 2 })

	st := getStatus(t, h)
	if st.Healthy || len(st.Problems) == 0 {
		t.Fatalf("status while the store fails says healthy: %+v", st)
	}
	if len(st.RecentErrors) == 0 || st.RecentErrors[0].Op != opGossip || !strings.Contains(st.RecentErrors[0].Message, "input/output error") {
		t.Fatalf("recent errors: %+v", st.RecentErrors)
	}
	if st.Store.Errors < 2 {
		t.Fatalf("store errors since start: %d", st.Store.Errors)
	}
	if n := strings.Count(logs.String(), "store failed;"); n != 1 {
		t.Fatalf("%d log lines for one cause of store failure, want 1:\n%s", n, logs)
	}

	a.putFault.Store(nil)
	a.sync.schedule(b.ID(), ch)
	waitFor(t, "sync to bring every record to A", 30*time.Second, func() bool { return heads(t, a, ch)[b.ID()] == last.Record.Seq })
}

// TestStatus: /v1/status with two linked nodes shows the partner online,
// the channel with its members, own head and sync state; once the partner
// stops, it shows it offline.
func TestStatus(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	publishNotes(t, a, ch, 3, "status")
	h := newAPIHarness(t, a)
	own := heads(t, a, ch)[a.ID()]
	st := getStatus(t, h)
	if !st.Healthy || st.ID != a.ID().String() || st.Name != "A" || st.Store.Records == 0 {
		t.Fatalf("status: %+v", st)
	}
	if len(st.Channels) != 1 || st.Channels[0].ID != ch.String() || st.Channels[0].Members != 2 || st.Channels[0].OwnHead != own {
		t.Fatalf("channels: %+v (own head %d)", st.Channels, own)
	}
	ps := st.Channels[0].Partners
	if len(ps) != 1 || ps[0].ID != b.ID().String() || !ps[0].Online {
		t.Fatalf("partners of the channel: %+v", ps)
	}
	if len(st.Peers.Connected) != 1 || st.Peers.Connected[0].ID != b.ID().String() {
		t.Fatalf("peers: %+v", st.Peers)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status to show B offline", 20*time.Second, func() bool {
		st := getStatus(t, h)
		return len(st.Peers.Offline) == 1 && st.Peers.Offline[0].ID == b.ID().String() && !st.Channels[0].Partners[0].Online
	})
}
