package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// Global flags and command flags are accepted anywhere among the
// positional arguments, before or after the command.
func TestFlagsAnywhere(t *testing.T) {
	dir := t.TempDir()
	body := filepath.Join(dir, "order.json")
	if err := os.WriteFile(body, []byte(`{"orderNumber":"PO-1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	link := "fulfils=" + cidB
	for _, args := range [][]string{
		{"publish", "CH", "order", body, "--link", link, "--json", "--home", "/h"},
		{"--json", "--home", "/h", "publish", "CH", "order", body, "--link", link},
		{"--home=/h", "publish", "--json", "CH", "--link=" + link, "order", body},
		{"publish", "--link", link, "CH", "--home", "/h", "order", "--json", body},
		{"-json", "-home", "/h", "publish", "CH", "order", "-link", link, body},
		{"--home", "/h", "publish", "CH", "order", "--json", "--link", link, "--", body},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			c := newCLI(t)
			out := c.mustRun(args...)
			var got api.Published
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stdout is not the publish JSON (--json lost?): %v\n%s", err, out)
			}
			if got != (api.Published{CID: cidA, Seq: 13}) {
				t.Errorf("stdout = %+v", got)
			}
			r := c.d.last(t)
			if r.Method != "POST" || r.Path != "/v1/channels/CH/records" {
				t.Errorf("request %s %s", r.Method, r.Path)
			}
			var p api.Publish
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatal(err)
			}
			want := api.Publish{Kind: "order", Body: json.RawMessage(`{"orderNumber":"PO-1"}`), Links: []protocol.JSONLink{{Rel: "fulfils", CID: cidB}}}
			if !reflect.DeepEqual(p, want) {
				t.Errorf("published %+v, want %+v", p, want)
			}
			if len(c.homes) != 1 || c.homes[0] != "/h" {
				t.Errorf("client made for homes %q, want [/h]", c.homes)
			}
		})
	}
}

// Subcommands take global flags before the subcommand word as well.
func TestGroupFlagsAnywhere(t *testing.T) {
	for _, args := range [][]string{
		{"channel", "ls", "--json"},
		{"channel", "--json", "ls"},
		{"--json", "channel", "ls"},
		{"--api", "127.0.0.1:1", "channel", "--home", "/h", "ls", "--json"},
	} {
		c := newCLI(t)
		out := c.mustRun(args...)
		var got []api.Channel
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
			t.Errorf("%q: stdout is not the channels JSON: %v\n%s", args, err, out)
		}
		if r := c.d.last(t); r.Path != "/v1/channels" {
			t.Errorf("%q: request %s", args, r.Path)
		}
	}
}

func TestHomeAndAPIDefaults(t *testing.T) {
	for _, tc := range []struct {
		env       map[string]string
		args      []string
		home, api string
	}{
		{map[string]string{"SANGSAENG_HOME": "/env/home"}, nil, "/env/home", ""},
		{map[string]string{"SANGSAENG_HOME": "/env/home"}, []string{"--home", "/flag"}, "/flag", ""},
		{map[string]string{"SANGSAENG_API": "127.0.0.1:9"}, []string{"--home", "/h"}, "/h", "127.0.0.1:9"},
		{map[string]string{"SANGSAENG_API": "127.0.0.1:9"}, []string{"--home", "/h", "--api", "localhost:7"}, "/h", "localhost:7"},
	} {
		c := newCLI(t)
		c.env = tc.env
		c.mustRun(append([]string{"id"}, tc.args...)...)
		if c.homes[0] != tc.home || c.addrs[0] != tc.api {
			t.Errorf("env %v args %q: client for home %q api %q, want %q %q", tc.env, tc.args, c.homes[0], c.addrs[0], tc.home, tc.api)
		}
	}
	// Without SANGSAENG_HOME the home is ~/.sangsaeng.
	c := newCLI(t)
	c.env = nil
	c.mustRun("id")
	if d, err := os.UserHomeDir(); err == nil && c.homes[0] != filepath.Join(d, ".sangsaeng") {
		t.Errorf("default home %q", c.homes[0])
	}
}

func TestParseLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want protocol.JSONLink
		err  string
	}{
		{in: "fulfils=" + cidA, want: protocol.JSONLink{Rel: "fulfils", CID: cidA}},
		{in: "made-from=" + cidB, want: protocol.JSONLink{Rel: "made-from", CID: cidB}},
		{in: "fulfils", err: "want REL=CID"},
		{in: "=" + cidA, err: "rel"},
		{in: "Fulfils=" + cidA, err: "lower-case"},
		{in: "ful fils=" + cidA, err: "lower-case"},
		{in: "fulfils=", err: "is not a CID"},
		{in: "fulfils=bafynope", err: "is not a CID"},
		{in: "fulfils=" + cidA + "=x", err: "is not a CID"},
	} {
		got, err := parseLink(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseLink(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("parseLink(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseLink(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		}
	}
}

// A bad command line exits 2 with a message and a usage line on stderr, and
// never calls the daemon.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "usage: sangsaeng COMMAND"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--name", "x", "id"}, "flag --name before the command"},
		{[]string{"id", "extra"}, `unexpected argument "extra"`},
		{[]string{"id", "--bogus"}, "unknown flag --bogus"},
		{[]string{"id", "--home"}, "flag --home needs a value"},
		{[]string{"id", "--log-level", "loud"}, "want debug, info, warn or error"},
		{[]string{"publish", "CH"}, "missing arguments"},
		{[]string{"publish", "CH", "order", "a", "b"}, `unexpected argument "b"`},
		{[]string{"publish", "CH", "order", "--link", "fulfils"}, `invalid value "fulfils" for --link: want REL=CID`},
		{[]string{"publish", "CH", "order", "--link", "fulfils=xyz"}, `is not a CID`},
		{[]string{"get"}, "missing arguments"},
		{[]string{"records", "--limit", "-1"}, "--limit -1"},
		{[]string{"records", "--limit", "ten"}, `invalid value "ten" for --limit`},
		{[]string{"records", "--since", "yesterday"}, "--since yesterday"},
		{[]string{"channel"}, "missing channel command"},
		{[]string{"channel", "frob"}, `unknown channel command "frob"`},
		{[]string{"channel", "invite", "CH"}, "missing arguments"},
		{[]string{"channel", "create"}, "missing arguments"},
		{[]string{"partners", "add", peerB}, "missing arguments"},
		{[]string{"partners", "rm"}, "missing arguments"},
		{[]string{"partners", "frob"}, `unknown partners command "frob"`},
		{[]string{"profile", "set"}, "--name is required"},
		{[]string{"profile", "set", "--name", "X", "--brn", "1234567890"}, "not a business registration number"},
		{[]string{"profile"}, "missing profile command"},
		{[]string{"verify"}, "missing arguments"},
		{[]string{"kinds", "a", "b"}, `unexpected argument "b"`},
		{[]string{"watch", "CH"}, `unexpected argument "CH"`},
		{[]string{"help", "frob"}, `unknown command "frob"`},
	} {
		c := newCLI(t)
		code := c.run(tc.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr:\n%s", tc.args, code, c.stderr.String())
		}
		if !strings.Contains(c.stderr.String(), tc.msg) {
			t.Errorf("%q: stderr %q, want %q in it", tc.args, c.stderr.String(), tc.msg)
		}
		if tc.args != nil && !strings.HasPrefix(c.stderr.String(), "sangsaeng: ") {
			t.Errorf("%q: stderr %q does not start with \"sangsaeng: \"", tc.args, c.stderr.String())
		}
		if c.stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing", tc.args, c.stdout.String())
		}
		if rs := c.d.requests(); len(rs) != 0 {
			t.Errorf("%q: the daemon was called: %+v", tc.args, rs)
		}
	}
}

// Every command and subcommand answers -h and --help, anywhere, on stdout
// with status 0.
func TestHelp(t *testing.T) {
	var lines [][]string
	for _, cmd := range commands {
		lines = append(lines, []string{cmd.name, "-h"})
	}
	for _, sub := range []string{"create", "invite", "join", "ls", "show", "remove-member"} {
		lines = append(lines, []string{"channel", sub, "--help"}, []string{"channel", sub, "x", "-h"})
	}
	lines = append(lines,
		[]string{"-h"}, []string{"--help"}, []string{"help"}, []string{"help", "publish"},
		[]string{"help", "channel", "create"},
		[]string{"partners", "add", "--help"}, []string{"partners", "rm", "-h"}, []string{"partners", "-h"},
		[]string{"profile", "set", "-h"}, []string{"--json", "channel", "-h"},
		[]string{"publish", "CH", "--help", "order"},
	)
	for _, args := range lines {
		c := newCLI(t)
		if code := c.run(args...); code != 0 {
			t.Errorf("%q: exit %d; stderr:\n%s", args, code, c.stderr.String())
		}
		if out := c.stdout.String(); !strings.Contains(out, "usage: sangsaeng") || !strings.Contains(out, "--home") {
			t.Errorf("%q: help lacks the usage line or the global flags:\n%s", args, out)
		}
		if len(c.d.requests()) != 0 {
			t.Errorf("%q: help called the daemon", args)
		}
	}
	c := newCLI(t)
	out := c.mustRun("publish", "-h")
	for _, want := range []string{"usage: sangsaeng publish CHANNEL KIND [FILE|-] [--link REL=CID]...", "--link REL=CID", "(repeatable)", "--json", "-h, --help"} {
		if !strings.Contains(out, want) {
			t.Errorf("publish -h lacks %q:\n%s", want, out)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"2026-11-22T09:30:00+09:00": "2026-11-22T09:30:00+09:00",
		"2026-11-22T00:30:00.125Z":  "2026-11-22T00:30:00.125Z",
		"2026-11-20":                "2026-11-20T00:00:00Z",
		"36h":                       "2026-11-21T00:00:00Z",
		"90m":                       "2026-11-22T10:30:00Z",
	} {
		got, err := parseSince(in, now)
		if err != nil || got != want {
			t.Errorf("parseSince(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	seoul := time.FixedZone("KST", 9*60*60)
	if got, err := parseSince("2026-11-20", now.In(seoul)); err != nil || got != "2026-11-20T00:00:00+09:00" {
		t.Errorf("parseSince of a date in Seoul = %q, %v", got, err)
	}
	for _, in := range []string{"", "yesterday", "-5h", "2026-13-01", "22/11/2026"} {
		if got, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) = %q, want an error", in, got)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string
		rest []string
		help bool
	}{
		{[]string{"id"}, "id", []string{}, false},
		{[]string{"--home", "/h", "id", "--json"}, "id", []string{"--home", "/h", "--json"}, false},
		{[]string{"--home=/h", "-json", "id"}, "id", []string{"--home=/h", "-json"}, false},
		{[]string{"--api", "x", "--log-level", "debug", "daemon"}, "daemon", []string{"--api", "x", "--log-level", "debug"}, false},
		{[]string{"-h"}, "", []string{"-h"}, true},
		{[]string{"--json"}, "", []string{"--json"}, false},
		{[]string{"--", "id", "x"}, "id", []string{"x"}, false},
		{[]string{"-", "x"}, "-", []string{"x"}, false},
	} {
		name, rest, help, err := splitCommand(tc.args)
		if err != nil || name != tc.name || !reflect.DeepEqual(append([]string{}, rest...), tc.rest) || help != tc.help {
			t.Errorf("splitCommand(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.args, name, rest, help, err, tc.name, tc.rest, tc.help)
		}
	}
}
