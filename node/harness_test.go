package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// testLogWriter sends a node's log lines to the test's output, so they show
// only when a test fails.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNode creates a node home in a temp dir and starts a real node on
// loopback TCP and QUIC with random ports.
func startNode(t testing.TB, name string) *Node {
	t.Helper()
	level := slog.LevelDebug
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelWarn // benchmarks measure the node, not its debug logging
	}
	return startNodeLog(t, name, level, nil, testLogWriter{t})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// has reports whether n holds record c.
func has(n *Node, c cid.Cid) bool {
	ok, err := n.store.Has(c)
	return err == nil && ok
}

// link makes b a member of a new channel of a's and returns its ID.
func link(t testing.TB, a, b *Node, name string) cid.Cid {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, name, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, err := a.Invite(ctx, ch, b.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Join(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if got != ch {
		t.Fatalf("joined %s, want %s", got, ch)
	}
	return ch
}
