package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestKeyDaemons: daemons A and B share channel X. A rotates its key with
// `sangsaeng key rotate`; B takes A's next record, signed with the new key;
// `sangsaeng verify` of A's record from before still succeeds on B and says
// which key signed it and that it was rotated later; an evidence bundle B
// exports verifies offline with both records; A adds a device key and
// revokes it, and `sangsaeng key ls` shows each key's state;
// `sangsaeng receipts X --request` on A shows B's signed heads.
func TestKeyDaemons(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var x api.Channel
	var inv api.Invite
	a.mustJSON(&x, "channel", "create", "X")
	a.mustJSON(&inv, "channel", "invite", "X", b.id)
	b.mustRun("channel", "join", inv.Code)
	note := func(text string) string {
		t.Helper()
		var p api.Published
		a.mustJSON(&p, "publish", x.ID, "note", tempFile(t, "note.json", fmt.Sprintf(`{"text": %q}`, text)))
		return p.CID
	}
	before := note("before the rotation")
	b.waitRecord(before)

	var rot api.KeyChanged
	a.mustJSON(&rot, "key", "rotate", "--note", "server replaced")
	after := note("after the rotation")
	b.waitRecord(after)

	var v api.Verify
	b.mustJSON(&v, "verify", after)
	if !v.OK || v.Signer != rot.Key {
		t.Fatalf("verify of the record after the rotation on B: %+v", v)
	}
	b.mustJSON(&v, "verify", before)
	if !v.OK || v.Signer != a.id || !strings.Contains(v.Key, "rotated later") {
		t.Fatalf("verify of the record from before on B: %+v", v)
	}
	if out := b.mustRun("verify", before); !strings.Contains(out, "rotated later") {
		t.Fatalf("verify's text does not say the key was rotated:\n%s", out)
	}

	car := filepath.Join(t.TempDir(), "x.car")
	b.mustRun("export", "--channel", x.ID, "--format", "car", "-o", car)
	b.stop() // offline: the bundle alone
	if out := b.mustRun("verify", car); !strings.Contains(out, before) || !strings.Contains(out, after) {
		t.Fatalf("the bundle does not list A's records:\n%s", out)
	}
	b.restartStopped()

	// B caught up (it holds after): asked, it signs a receipt that A shows.
	var rs []api.Receipt
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		a.mustJSON(&rs, "receipts", "X", "--request") // B restarted: once it is connected again
		if len(rs) == 1 && rs[0].Seq > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(rs) != 1 || rs[0].Member != b.id || rs[0].Seq == 0 || rs[0].Seq != rs[0].Head || rs[0].Envelope == "" {
		t.Fatalf("receipts on A: %+v", rs)
	}
	if out := a.mustRun("receipts", "X"); !strings.Contains(out, b.id) || !strings.Contains(out, fmt.Sprintf("%d of %d", rs[0].Seq, rs[0].Head)) {
		t.Fatalf("receipts text on A:\n%s", out)
	}

	var dev api.KeyChanged
	a.mustJSON(&dev, "key", "add-device", "--note", "backup server")
	if dev.File == "" {
		t.Fatalf("add-device wrote no key file: %+v", dev)
	}
	a.mustRun("key", "revoke", dev.Key)
	if _, stderr, err := a.run("key", "revoke", rot.Key); err == nil || !strings.Contains(stderr, "rotate") {
		t.Fatalf("revoking the key the node signs with: %v %s", err, stderr)
	}
	var ks api.Keys
	a.mustJSON(&ks, "key", "ls")
	states := map[string]string{}
	for _, k := range ks.Keys {
		states[k.Key] = k.State
	}
	if ks.Company != a.id || ks.Signer != rot.Key || ks.Entries != 3 ||
		states[a.id] != "rotated" || states[rot.Key] != "in force" || states[dev.Key] != "revoked" {
		t.Fatalf("key ls on A: %+v", ks)
	}
	if out := a.mustRun("key", "ls"); !strings.Contains(out, "this node") || !strings.Contains(out, "revoked") {
		t.Fatalf("key ls text:\n%s", out)
	}
}
