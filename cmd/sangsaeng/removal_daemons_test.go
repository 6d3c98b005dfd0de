package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// startDaemonSyncing is startDaemon with the daemon's anti-entropy sync
// every second, so that it asks its partners for records again and again.
func startDaemonSyncing(t *testing.T, bin, name string) *daemon {
	t.Helper()
	d := &daemon{t: t, bin: bin, home: t.TempDir(), name: name}
	d.mustRun("init", "--name", name, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--api", "127.0.0.1:0")
	path := filepath.Join(d.home, "config.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^sync_interval\s*=.*$`)
	if line.Match(raw) {
		raw = line.ReplaceAll(raw, []byte(`sync_interval = "1s"`))
	} else {
		raw = append(raw, []byte("\nsync_interval = \"1s\"\n")...)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(func() { d.stop() })
	var id api.ID
	d.mustJSON(&id, "id")
	d.id = id.ID
	return d
}

// TestRemovedMemberDaemons: daemons A, B and C share channel X; A and C also
// share Y, so C stays connected to A. A removes C from X with `sangsaeng
// channel remove-member X C`. The records A and B publish in X afterwards
// reach B and A and never C (0 of N), though C stays subscribed, syncs
// every second and asks for each record by CID, while C still receives Y.
func TestRemovedMemberDaemons(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	c := startDaemonSyncing(t, bin, "C")

	var x, y api.Channel
	var inv api.Invite
	a.mustJSON(&x, "channel", "create", "X")
	a.mustJSON(&inv, "channel", "invite", "X", b.id)
	b.mustRun("channel", "join", inv.Code)
	a.mustJSON(&inv, "channel", "invite", "X", c.id)
	c.mustRun("channel", "join", inv.Code)
	a.mustJSON(&y, "channel", "create", "Y")
	a.mustJSON(&inv, "channel", "invite", "Y", c.id)
	c.mustRun("channel", "join", inv.Code)

	note := func(d *daemon, ch, text string) string {
		t.Helper()
		var p api.Published
		d.mustJSON(&p, "publish", ch, "note", tempFile(t, "note.json", fmt.Sprintf(`{"text": %q}`, text)))
		return p.CID
	}
	before := note(b, x.ID, "before the removal")
	a.waitRecord(before)
	c.waitRecord(before)

	a.mustRun("channel", "remove-member", "X", c.id)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ch api.Channel
		b.mustJSON(&ch, "channel", "show", x.ID)
		if _, ok := ch.Removed[c.id]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not learn of the removal: %+v", ch)
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 10
	var after []string
	for i := range n {
		after = append(after, note(a, x.ID, fmt.Sprintf("A after the removal %d", i)))
		after = append(after, note(b, x.ID, fmt.Sprintf("B after the removal %d", i)))
	}
	for _, cs := range after {
		a.waitRecord(cs)
		b.waitRecord(cs)
	}
	// C still receives Y, over its connection to A.
	c.waitRecord(note(a, y.ID, "Y after the removal"))

	// C restarts, so that it syncs with A once more after every record was
	// published (a sync on start, then every second), and waits until A has
	// refused it.
	c.stop()
	c.restartStopped()
	deadline = time.Now().Add(20 * time.Second)
	for {
		var ch api.Channel
		c.mustJSON(&ch, "channel", "show", x.ID)
		refused := false
		for _, s := range ch.Sync {
			if s.Peer == a.id && strings.Contains(s.Error, "refused") {
				refused = true
			}
		}
		if refused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("C's sync of X with A was not refused: %+v", ch.Sync)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And it asks for each record by CID: `get` fetches from partners.
	got := 0
	for _, cs := range after {
		if _, _, err := c.run("get", cs, "--json"); err == nil {
			got++
		}
	}
	c.waitRecord(note(a, y.ID, "Y after C's restart"))
	t.Logf("records published in X after C's removal: %d; held by C (gossip, sync, fetch): %d", len(after), got)
	if got != 0 {
		t.Fatalf("C holds %d of %d records published after its removal", got, len(after))
	}
	if _, _, err := c.run("get", before, "--json"); err != nil {
		t.Fatalf("C lost the record from before its removal: %v", err)
	}
}
