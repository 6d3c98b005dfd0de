package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// sealed returns a signed note with body, as envelope bytes.
func sealed(t *testing.T, body map[string]any) *protocol.Signed {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	r := &protocol.Record{
		Channel: protocol.Sum([]byte("a channel")),
		Author:  id, Seq: 1, Time: 1795000000000, Kind: "note", Body: body,
	}
	s, err := protocol.Seal(r, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "record.env")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A file goes to the daemon as envelope bytes.
func TestVerifyFileWithDaemon(t *testing.T) {
	c := newCLI(t)
	s := sealed(t, map[string]any{"text": "납기 확인"})
	c.mustRun("verify", writeFile(t, s.Envelope))
	r := c.d.last(t)
	if r.Method != "POST" || r.Path != "/v1/verify" || string(r.Body) != string(s.Envelope) {
		t.Errorf("request %s %s with %d bytes", r.Method, r.Path, len(r.Body))
	}
	// Not ok: the result is printed and the exit status is 1.
	c.d.verify = api.Verify{OK: false, CID: cidA, Author: peerA, Errors: []string{"seq 3 does not follow the author's head 1"}}
	if code := c.run("verify", cidA); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	contains(t, "verify not ok", c.stdout.String(), "ok      NO", "error   seq 3 does not follow")
	contains(t, "verify not ok", c.stderr.String(), "sangsaeng: the record does not verify")
	if code := c.run("verify", cidA, "--json"); code != 1 {
		t.Errorf("--json: exit %d, want 1", code)
	}
	sameJSON(t, "verify --json", []byte(c.stdout.String()), c.d.verify)
}

// With no daemon, a file is verified offline.
func TestVerifyOffline(t *testing.T) {
	good := sealed(t, map[string]any{"text": "hello"})
	badBody := sealed(t, map[string]any{"wrong": "field"})
	tampered := append([]byte(nil), good.Envelope...)
	i := strings.Index(string(tampered), "hello")
	tampered[i] = 'j'

	noNode := &Env{Getenv: func(string) string { return "" }, NewClient: api.FromHome}
	for _, tc := range []struct {
		name string
		env  []byte
		ok   bool
		cid  string
		err  string
	}{
		{"good", good.Envelope, true, good.CID.String(), ""},
		{"schema", badBody.Envelope, false, badBody.CID.String(), "text"},
		{"tampered", tampered, false, "", "bad signature"},
		{"garbage", []byte("not an envelope"), false, "", "bad envelope"},
	} {
		var out, errb strings.Builder
		noNode.Stdout, noNode.Stderr, noNode.Stdin = &out, &errb, strings.NewReader("")
		noNode.Globals = Globals{}
		path := writeFile(t, tc.env)
		code := run(t.Context(), noNode, []string{"verify", path, "--json", "--home", filepath.Join(t.TempDir(), "none")})
		if (code == 0) != tc.ok {
			t.Errorf("%s: exit %d; stderr %s", tc.name, code, errb.String())
		}
		var v api.Verify
		if err := json.Unmarshal([]byte(out.String()), &v); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, out.String())
		}
		if v.OK != tc.ok || (tc.cid != "" && v.CID != tc.cid) || (tc.err != "" && !strings.Contains(strings.Join(v.Errors, "\n"), tc.err)) {
			t.Errorf("%s: %+v", tc.name, v)
		}
		if tc.ok && (v.Author != good.Record.Author.String() || len(v.Errors) != 0) {
			t.Errorf("%s: %+v", tc.name, v)
		}
		contains(t, tc.name, errb.String(), "chain position were not checked")
	}

	// A home with a token but no daemon running: offline too.
	c := newCLI(t)
	c.d.Close()
	path := writeFile(t, good.Envelope)
	c.mustRun("verify", path)
	contains(t, "daemon down", c.stdout.String(), "ok      yes", "cid     "+good.CID.String())
	contains(t, "daemon down", c.stderr.String(), "no daemon answers")

	// A CID needs the daemon.
	if code := c.run("verify", cidA); code != 1 || !strings.Contains(c.stderr.String(), "no daemon answers") {
		t.Errorf("verify CID without daemon: exit %d, stderr %q", code, c.stderr.String())
	}
}
