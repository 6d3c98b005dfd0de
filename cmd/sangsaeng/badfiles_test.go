package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// TestPublishBadFiles: record bodies from files (and stdin) that are too
// large, not JSON, cut short, of the wrong type or not UTF-8 are refused
// before the daemon is asked, with a one-line message that names the file
// and says what is wrong; a body too large names the limit.
func TestPublishBadFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := `{"text": "` + strings.Repeat("x", protocol.MaxRecordSize) + `"}`
	limit := fmt.Sprint(protocol.MaxRecordSize)
	c := newCLI(t)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		says  []string
	}{
		{"too large", []string{file("big.json", big)}, "", []string{"big.json", "too large", "the limit is " + limit + " bytes", fmt.Sprint(len(big))}},
		{"too large on stdin", []string{"-"}, big, []string{"stdin", "too large", "the limit is " + limit + " bytes"}},
		{"not JSON", []string{file("order.csv", "PO-1,58101-3X000,1200\n")}, "", []string{"order.csv", "JSON"}},
		{"cut short", []string{file("cut.json", `{"text": "납기 확인`)}, "", []string{"cut.json", "JSON"}},
		{"an array", []string{file("array.json", `[{"text": "x"}]`)}, "", []string{"array.json", "JSON object"}},
		{"a string", []string{file("string.json", `"text"`)}, "", []string{"string.json", "JSON object"}},
		{"empty", []string{file("empty.json", "")}, "", []string{"empty.json"}},
		{"CP949", []string{file("cp949.json", "{\"text\": \"\xc7\xd1\xb1\xdb\"}")}, "", []string{"cp949.json", "UTF-8"}},
		{"duplicate key", []string{file("dup.json", `{"text": "a", "text": "b"}`)}, "", []string{"dup.json", "twice"}},
		{"a directory", []string{dir}, "", []string{dir, "directory"}},
		{"missing", []string{filepath.Join(dir, "missing.json")}, "", []string{"missing.json"}},
	} {
		c.stdin = tc.stdin
		code := c.run(append([]string{"publish", "CH", "note"}, tc.args...)...)
		msg := c.stderr.String()
		if code != 1 || !strings.HasPrefix(msg, "sangsaeng: ") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line", tc.name, code, msg)
		}
		for _, s := range tc.says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, s)
			}
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(msg))
	}
	if n := len(c.d.requests()); n != 0 {
		t.Errorf("%d bad bodies reached the daemon", n)
	}
}

// TestVerifyBadFiles: envelope files that are too large, cut short or
// garbage get a message that says so; a file too large is refused before it
// is read, with the limit.
func TestVerifyBadFiles(t *testing.T) {
	good := sealed(t, map[string]any{"text": "검사성적서"})
	big := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(big, make([]byte, protocol.MaxEnvelopeSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	if code := c.run("verify", big); code != 1 {
		t.Errorf("too large: exit %d", code)
	}
	contains(t, "too large", c.stderr.String(), "disk.img", "too large", fmt.Sprintf("the limit is %d bytes", protocol.MaxEnvelopeSize))
	t.Logf("too large: %s", strings.TrimSpace(c.stderr.String()))
	if n := len(c.d.requests()); n != 0 {
		t.Errorf("a file too large reached the daemon")
	}

	// Offline, the checks say what is wrong with the others.
	noNode := &Env{Getenv: func(string) string { return "" }, NewClient: api.FromHome}
	for _, tc := range []struct {
		name string
		env  []byte
		says string
	}{
		{"cut short", good.Envelope[:len(good.Envelope)/2], "bad envelope"},
		{"cut by one byte", good.Envelope[:len(good.Envelope)-1], "bad envelope"},
		{"empty", nil, "envelope"},
		{"garbage", []byte("\x0a\xff\xff\xff\xff\x0f"), "bad envelope"},
	} {
		var out, errb strings.Builder
		noNode.Stdout, noNode.Stderr, noNode.Stdin = &out, &errb, strings.NewReader("")
		noNode.Globals = Globals{}
		code := run(t.Context(), noNode, []string{"verify", writeFile(t, tc.env), "--home", filepath.Join(t.TempDir(), "none")})
		if code != 1 || !strings.Contains(out.String(), "ok      NO") || !strings.Contains(out.String(), tc.says) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, code, out.String(), errb.String())
		}
		t.Logf("%s: %s", tc.name, strings.ReplaceAll(strings.TrimSpace(out.String()), "\n", "; "))
	}
}
