package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// sameJSON fails unless got and want are equal as JSON values.
func sameJSON(t *testing.T, what string, got []byte, want any) {
	t.Helper()
	wb, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: stdout is not JSON: %v\n%s", what, err, got)
	}
	json.Unmarshal(wb, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: JSON\n%s\nwant\n%s", what, got, wb)
	}
}

// contains fails unless out holds every string of want.
func contains(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, s := range want {
		if !strings.Contains(out, s) {
			t.Errorf("%s: output lacks %q:\n%s", what, s, out)
		}
	}
}

// With --json every command prints exactly the API's JSON shape.
func TestJSONOutput(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		want   any
		method string
		path   string
	}{
		{[]string{"id"}, cannedID, "GET", "/v1/id"},
		{[]string{"status"}, cannedStatus, "GET", "/v1/status"},
		{[]string{"peers"}, cannedPeers, "GET", "/v1/peers"},
		{[]string{"partners"}, cannedPartners, "GET", "/v1/partners"},
		{[]string{"partners", "ls"}, cannedPartners, "GET", "/v1/partners"},
		{[]string{"channel", "ls"}, []api.Channel{cannedChannel}, "GET", "/v1/channels"},
		{[]string{"channel", "show", "hanbit-daeil"}, cannedChannel, "GET", "/v1/channels/hanbit-daeil"},
		{[]string{"channel", "create", "hanbit-daeil", "--member", peerB}, cannedChannel, "POST", "/v1/channels"},
		{[]string{"channel", "invite", "hanbit-daeil", peerB}, api.Invite{Code: "sangsaeng-invite:abc123"}, "POST", "/v1/channels/hanbit-daeil/invite"},
		{[]string{"channel", "join", "sangsaeng-invite:abc123"}, cannedChannel, "POST", "/v1/join"},
		{[]string{"channel", "remove-member", chanID, peerB}, cannedChannel, "POST", "/v1/channels/" + chanID + "/remove-member"},
		{[]string{"get", cidA}, cannedRecord, "GET", "/v1/records/" + cidA},
		{[]string{"records"}, []api.Record{cannedRecord}, "GET", "/v1/records"},
		{[]string{"verify", cidA}, api.Verify{OK: true, CID: cidA, Author: peerA, Errors: []string{}}, "GET", "/v1/verify/" + cidA},
		{[]string{"kinds"}, []string{"note", "order"}, "GET", "/v1/kinds"},
		{[]string{"kinds", "order"}, cannedSchema, "GET", "/v1/kinds/order"},
	} {
		c := newCLI(t)
		out := c.mustRun(append(tc.args, "--json")...)
		sameJSON(t, strings.Join(tc.args, " "), []byte(out), tc.want)
		if r := c.d.last(t); r.Method != tc.method || r.Path != tc.path {
			t.Errorf("%q: request %s %s, want %s %s", tc.args, r.Method, r.Path, tc.method, tc.path)
		}
		if c.stderr.Len() != 0 {
			t.Errorf("%q: stderr %q", tc.args, c.stderr.String())
		}
	}
}

// Without --json, results are for people: tables and plain values.
func TestTextOutput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"id"}, []string{"peer ID       " + peerA, "name          Hanbit Motors", "addrs         /ip4/127.0.0.1/tcp/4801\n              /ip4/203.0.113.7/tcp/4801",
			"reachability  behind NAT: partners reach it through its relays",
			"relay         Daeil Parts " + peerB + " (slot until 2026-12-03T12:00:00Z, from config)",
			"relay addr    /ip4/198.51.100.10/tcp/4801/p2p/" + peerB + "/p2p-circuit/p2p/" + peerA}},
		{[]string{"status"}, []string{"node          Hanbit Motors  " + peerA, "state         healthy (정상)",
			"reachability  private: partners cannot dial it, and it holds no relay slot (set relay.use in config.toml)",
			"relay         Daeil Parts " + peerB + " (no slot: refused, from invite)"}},
		{[]string{"peers"}, []string{"PEER ID", "LATENCY", peerB + "  Daeil Parts  /ip4/10.0.0.2/tcp/4801  3.2 ms   1"}},
		{[]string{"partners"}, []string{"PEER ID", peerB + "  Daeil Parts  /ip4/10.0.0.2/tcp/4801 /ip4/10.0.0.2/udp/4801/quic-v1"}},
		{[]string{"channel", "ls"}, []string{"CHANNEL ID", chanID + "  hanbit-daeil  2        19       1"}},
		{[]string{"channel", "show", "x"}, []string{
			"channel  " + chanID, "name     hanbit-daeil",
			peerA + "  admin   12",
			peerB + "  member  7     FLAGGED",
			"fork evidence", peerB + "  5    " + cidA + " " + cidB,
		}},
		{[]string{"channel", "invite", "x", peerB}, []string{"sangsaeng-invite:abc123\n"}},
		{[]string{"get", cidA}, []string{`"cid": "` + cidA + `"`, `"part": "<A&B>"`, `"quantity": "350.5"`, `"prev": "` + cidB + `"`}},
		{[]string{"records"}, []string{"TIME", "2026-11-22T00:30:00.000Z  " + short(chanID) + "  " + short(peerA) + "  2    order  " + cidA}},
		{[]string{"verify", cidA}, []string{"ok      yes", "cid     " + cidA}},
		{[]string{"kinds"}, []string{"note\norder\n"}},
		{[]string{"kinds", "order"}, []string{"{\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n  \"title\": \"order\""}},
		{[]string{"partners", "add", peerB, "/ip4/10.0.0.2/tcp/4801", "--name", "Daeil"}, []string{"added partner " + peerB}},
		{[]string{"partners", "rm", peerB}, []string{"removed partner " + peerB}},
		{[]string{"profile", "set", "--name", "Hanbit Motors", "--brn", "123-45-67891"}, []string{"profile set: Hanbit Motors"}},
	} {
		c := newCLI(t)
		out := c.mustRun(tc.args...)
		contains(t, strings.Join(tc.args, " "), out, tc.want...)
	}
}

// Commands send what they were given.
func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		method, path string
		query        string
		body         any
	}{
		{[]string{"partners", "add", peerB, "/ip4/10.0.0.2/tcp/4801", "/dns4/daeil.example/tcp/4801", "--name", "Daeil"},
			"POST", "/v1/partners", "", api.Partner{ID: peerB, Name: "Daeil", Addrs: []string{"/ip4/10.0.0.2/tcp/4801", "/dns4/daeil.example/tcp/4801"}}},
		{[]string{"partners", "rm", peerB}, "DELETE", "/v1/partners/" + peerB, "", nil},
		{[]string{"channel", "create", "hanbit-daeil", "--member", peerB, "--description", "orders", "--member", peerA},
			"POST", "/v1/channels", "", api.CreateChannel{Name: "hanbit-daeil", Members: []string{peerB, peerA}, Description: "orders"}},
		{[]string{"channel", "invite", "hanbit-daeil", peerB}, "POST", "/v1/channels/hanbit-daeil/invite", "", api.InviteRequest{Peer: peerB}},
		{[]string{"channel", "join", "CODE"}, "POST", "/v1/join", "", api.JoinRequest{Code: "CODE"}},
		{[]string{"channel", "remove-member", "hanbit-daeil", peerB}, "POST", "/v1/channels/hanbit-daeil/remove-member", "", api.RemoveMember{Peer: peerB}},
		{[]string{"profile", "set", "--name", "Hanbit Motors", "--brn", "123-45-67891"}, "PUT", "/v1/profile", "", api.Profile{Name: "Hanbit Motors", BRN: "1234567891"}},
		{[]string{"records", "--channel", "hanbit-daeil", "--kind", "order", "--author", peerA, "--since", "2026-11-01T09:00:00+09:00", "--limit", "5"},
			"GET", "/v1/records", "author=" + peerA + "&channel=hanbit-daeil&kind=order&limit=5&since=2026-11-01T09%3A00%3A00%2B09%3A00", nil},
		{[]string{"get", cidA, "--raw"}, "GET", "/v1/records/" + cidA, "raw=1", nil},
	} {
		c := newCLI(t)
		c.mustRun(tc.args...)
		r := c.d.last(t)
		if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query {
			t.Errorf("%q: request %s %s?%s, want %s %s?%s", tc.args, r.Method, r.Path, r.Query, tc.method, tc.path, tc.query)
		}
		if tc.body != nil {
			sameJSON(t, strings.Join(tc.args, " "), r.Body, tc.body)
		}
	}
}

func TestPublish(t *testing.T) {
	c := newCLI(t)
	// From stdin, with FILE absent or -.
	c.stdin = `{"text": "안녕하세요"}`
	for _, args := range [][]string{{"publish", "CH", "note"}, {"publish", "CH", "note", "-"}} {
		if out := c.mustRun(args...); out != cidA+"\n" {
			t.Errorf("%q: stdout %q, want the CID", args, out)
		}
		sameJSON(t, "publish body", c.d.last(t).Body, api.Publish{Kind: "note", Body: json.RawMessage(c.stdin)})
	}
	// A body that is not a JSON object is refused before the daemon is asked.
	n := len(c.d.requests())
	for _, body := range []string{``, `[1]`, `{"a":1,"a":2}`, `{"a":`, `{} {}`} {
		c.stdin = body
		if code := c.run("publish", "CH", "note"); code != 1 || !strings.Contains(c.stderr.String(), "sangsaeng: body in stdin: ") {
			t.Errorf("body %q: exit %d, stderr %q", body, code, c.stderr.String())
		}
	}
	if code := c.run("publish", "CH", "note", filepath.Join(t.TempDir(), "missing.json")); code != 1 || !strings.Contains(c.stderr.String(), "missing.json") {
		t.Errorf("missing file: exit %d, stderr %q", code, c.stderr.String())
	}
	if len(c.d.requests()) != n {
		t.Errorf("a bad body reached the daemon")
	}
}

func TestGetRaw(t *testing.T) {
	c := newCLI(t)
	if out := c.mustRun("get", "--raw", cidA); out != string(cannedEnvelope) {
		t.Errorf("get --raw wrote %q, want the envelope bytes", out)
	}
}

func TestWatch(t *testing.T) {
	c := newCLI(t)
	// The fake daemon sends events 7 and 8, then ends the stream; the
	// watch resumes after 8, which the fake refuses.
	code := c.run("watch", "--channel", "hanbit-daeil", "--json")
	if code != 1 || !strings.Contains(c.stderr.String(), "no events after 8 here") || !strings.Contains(c.stderr.String(), "closed the stream; resuming") {
		t.Errorf("exit %d, stderr %q", code, c.stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(c.stdout.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("watch --json printed %d lines, want 2:\n%s", len(lines), c.stdout.String())
	}
	for i, l := range lines {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line["event_id"] != strconv.Itoa(7+i) {
			t.Errorf("line %d: event_id %v, want %d", i, line["event_id"], 7+i)
		}
		delete(line, "event_id")
		b, _ := json.Marshal(line)
		sameJSON(t, "watch line", b, cannedRecord)
	}
	reqs := c.d.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if r := reqs[0]; r.Path != "/v1/events" || r.Query != "channel=hanbit-daeil" || r.LastEventID != "" {
		t.Errorf("first request %s?%s Last-Event-ID %q", r.Path, r.Query, r.LastEventID)
	}
	if r := reqs[1]; r.LastEventID != "8" {
		t.Errorf("resumed with Last-Event-ID %q, want 8", r.LastEventID)
	}
	c.run("watch", "--since", "0")
	contains(t, "watch", c.stdout.String(), "7  2026-11-22T00:30:00.000Z  "+short(chanID)+"  order  "+short(peerA)+" #2  "+cidA+"\n")
	if r := c.d.last(t); r.LastEventID != "8" {
		t.Errorf("last request Last-Event-ID %q", r.LastEventID)
	}
}

// API errors print their message; with --json, the error object.
func TestAPIErrors(t *testing.T) {
	c := newCLI(t)
	c.d.fail = api.Errorf(api.CodeNotFound, 404, "no record %s", cidB)
	if code := c.run("get", cidB); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if got, want := c.stderr.String(), "sangsaeng: no record "+cidB+"\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if code := c.run("get", cidB, "--json"); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	sameJSON(t, "error", []byte(c.stderr.String()), map[string]string{"code": "not_found", "message": "no record " + cidB})
	if c.stdout.Len() != 0 {
		t.Errorf("stdout %q on error", c.stdout.String())
	}

	c.d.fail = api.Errorf(api.CodeUnauthorized, 401, "bad token")
	c.run("id", "--home", "/h")
	contains(t, "unauthorized", c.stderr.String(), "sangsaeng: bad token", filepath.Join("/h", "api.token"))
}

// With no daemon running, the message says how to start one.
func TestNoDaemon(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, api.TokenFile), []byte("tok\n"), 0o600)
	env := &Env{Stdin: strings.NewReader(""), Getenv: func(string) string { return "" }, NewClient: api.FromHome}
	var out, errb strings.Builder
	env.Stdout, env.Stderr = &out, &errb
	code := run(t.Context(), env, []string{"peers", "--home", home, "--api", addr})
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := "sangsaeng: no daemon answers at http://" + addr + ": start it with `sangsaeng daemon --home " + home + "`\n"
	if errb.String() != want {
		t.Errorf("stderr %q, want %q", errb.String(), want)
	}
	// status tells monitoring "no daemon" (3) apart from "unhealthy" (1).
	out.Reset()
	errb.Reset()
	if code := run(t.Context(), env, []string{"status", "--home", home, "--api", addr}); code != 3 || !strings.Contains(errb.String(), "sangsaeng daemon") {
		t.Errorf("status with no daemon: exit %d, stderr %q; want 3 and how to start it", code, errb.String())
	}
	// No node at all.
	errb.Reset()
	run(t.Context(), env, []string{"id", "--home", filepath.Join(home, "none")})
	contains(t, "no node", errb.String(), "sangsaeng: no node in ", "sangsaeng init")
}

// The real client factory reads the token and api.addr from the home.
func TestClientFromHome(t *testing.T) {
	d := newFakeDaemon(t)
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, api.TokenFile), []byte(testTok+"\n"), 0o600)
	os.WriteFile(filepath.Join(home, api.AddrFile), []byte(strings.TrimPrefix(d.URL, "http://")+"\n"), 0o600)
	env := &Env{Stdin: strings.NewReader(""), Getenv: envMap{"SANGSAENG_HOME": home}.get, NewClient: api.FromHome}
	var out, errb strings.Builder
	env.Stdout, env.Stderr = &out, &errb
	if code := run(t.Context(), env, []string{"id", "--json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	sameJSON(t, "id", []byte(out.String()), cannedID)
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }
