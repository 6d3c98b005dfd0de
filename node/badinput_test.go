package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// apiHarness serves a real node's API through httptest.
type apiHarness struct {
	n     *Node
	srv   *httptest.Server
	token string
}

func newAPIHarness(t testing.TB, n *Node) *apiHarness {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(n.cfg.Home, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	t.Cleanup(srv.Close)
	return &apiHarness{n: n, srv: srv, token: strings.TrimSpace(string(tok))}
}

// do sends a request and returns the status and the decoded error body
// (zero for a success).
func (h *apiHarness) do(t testing.TB, method, path string, body []byte) (int, api.Error, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s %s: status %d with a body that is not an API error: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, e, raw
}

// TestAPIBadInput: requests that are too large, not JSON, of the wrong
// types, of unknown kinds or missing fields get a 4xx with the right code
// and a message that names the limit or the field, never a 5xx; and the
// node's data does not change.
func TestAPIBadInput(t *testing.T) {
	n := startNode(t, "A")
	ctx := context.Background()
	ch, err := n.CreateChannel(ctx, "bad", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newAPIHarness(t, n)
	pub := "/v1/channels/" + ch.String() + "/records"
	emoji := strings.Repeat("😀", 65536) // within the note's 65,536 characters, beyond a record's bytes
	big := func(k int) []byte {
		return []byte(`{"kind": "note", "body": {"text": "` + strings.Repeat("x", k) + `"}}`)
	}
	pid := n.ID().String()
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
		says                     []string // the message contains each
	}{
		{"request beyond the API limit", "POST", pub, string(big(maxRequestBody + 10)), 413, api.CodeTooLarge, []string{"too large", fmt.Sprint(maxRequestBody)}},
		{"record beyond the record limit", "POST", pub, `{"kind": "note", "body": {"text": "` + emoji + `"}}`, 413, api.CodeTooLarge, []string{"too large", fmt.Sprint(protocol.MaxRecordSize)}},
		{"empty request", "POST", pub, ``, 400, api.CodeBadRequest, []string{"JSON"}},
		{"not JSON", "POST", pub, `kind=note`, 400, api.CodeBadRequest, []string{"JSON"}},
		{"truncated JSON", "POST", pub, `{"kind": "note", "body": {"text": "x"`, 400, api.CodeBadRequest, []string{"JSON"}},
		{"kind of the wrong type", "POST", pub, `{"kind": 5, "body": {"text": "x"}}`, 400, api.CodeBadRequest, []string{"kind"}},
		{"body of the wrong type", "POST", pub, `{"kind": "note", "body": "text"}`, 422, api.CodeInvalidRecord, []string{"object"}},
		{"body an array", "POST", pub, `{"kind": "note", "body": [1, 2]}`, 422, api.CodeInvalidRecord, []string{"object"}},
		{"field of the wrong type", "POST", pub, `{"kind": "note", "body": {"text": 5}}`, 422, api.CodeInvalidRecord, []string{"text"}},
		{"unknown kind", "POST", pub, `{"kind": "invoice", "body": {"text": "x"}}`, 422, api.CodeInvalidRecord, []string{"unknown kind", "invoice"}},
		{"missing kind", "POST", pub, `{"body": {"text": "x"}}`, 400, api.CodeBadRequest, []string{"kind"}},
		{"missing body", "POST", pub, `{"kind": "note"}`, 400, api.CodeBadRequest, []string{"body"}},
		{"null body", "POST", pub, `{"kind": "note", "body": null}`, 422, api.CodeInvalidRecord, []string{"object"}},
		{"missing required field", "POST", pub, `{"kind": "note", "body": {"subject": "x"}}`, 422, api.CodeInvalidRecord, []string{"text"}},
		{"unknown request field", "POST", pub, `{"kind": "note", "body": {"text": "x"}, "author": "me"}`, 400, api.CodeBadRequest, []string{"author"}},
		{"unknown body field", "POST", pub, `{"kind": "note", "body": {"text": "x", "price": "1"}}`, 422, api.CodeInvalidRecord, []string{"price"}},
		{"duplicate key", "POST", pub, `{"kind": "note", "body": {"text": "x", "text": "y"}}`, 422, api.CodeInvalidRecord, []string{"text"}},
		{"deep nesting", "POST", pub, `{"kind": "note", "body": {"text": "x", "a": ` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`, 422, api.CodeInvalidRecord, []string{"deep"}},
		{"number beyond float64", "POST", pub, `{"kind": "note", "body": {"text": "x", "n": 1e999}}`, 422, api.CodeInvalidRecord, []string{"n"}},
		{"text in CP949, not UTF-8", "POST", pub, "{\"kind\": \"note\", \"body\": {\"text\": \"\xc7\xd1\xb1\xdb\"}}", 422, api.CodeInvalidRecord, []string{"UTF-8", "byte 10"}},
		{"bad link", "POST", pub, `{"kind": "note", "body": {"text": "x"}, "links": [{"rel": "about", "cid": "nope"}]}`, 400, api.CodeBadRequest, []string{"links/0"}},
		{"genesis by publish", "POST", pub, `{"kind": "channel-genesis", "body": {"name": "x", "admins": ["` + pid + `"], "members": ["` + pid + `"]}}`, 422, api.CodeInvalidRecord, []string{"channel create"}},
		{"unknown channel", "POST", "/v1/channels/bafyreidm6zp6i447dfkwbzn7uqwnztd33o3wdshvuska34r4f5s66knefe/records", `{"kind": "note", "body": {"text": "x"}}`, 404, api.CodeNotFound, []string{"channel"}},
		{"channel create, name of the wrong type", "POST", "/v1/channels", `{"name": 5}`, 400, api.CodeBadRequest, []string{"name"}},
		{"channel create, bad member", "POST", "/v1/channels", `{"name": "x", "members": ["bob"]}`, 400, api.CodeBadRequest, []string{"bob"}},
		{"invite, bad peer", "POST", "/v1/channels/bad/invite", `{"peer": "Qm"}`, 400, api.CodeBadRequest, []string{"peer ID"}},
		{"invite, not an ed25519 peer", "POST", "/v1/channels/bad/invite", `{"peer": "12D3KooWnope"}`, 422, api.CodeInvalidRecord, []string{"add/0", "peer ID"}},
		{"invite, missing peer", "POST", "/v1/channels/bad/invite", `{}`, 400, api.CodeBadRequest, []string{"peer"}},
		{"join, garbage code", "POST", "/v1/join", `{"code": "ssinv1.!!!"}`, 400, api.CodeBadRequest, []string{"invite"}},
		{"join, code of the wrong type", "POST", "/v1/join", `{"code": ["x"]}`, 400, api.CodeBadRequest, []string{"code"}},
		{"partner, bad address", "POST", "/v1/partners", `{"id": "` + pid + `", "addrs": ["tcp://x"]}`, 400, api.CodeBadRequest, []string{"tcp://x"}},
		{"profile, wrong type", "PUT", "/v1/profile", `{"name": {"ko": "x"}}`, 400, api.CodeBadRequest, []string{"name"}},
		{"records, bad limit", "GET", "/v1/records?limit=lots", ``, 400, api.CodeBadRequest, []string{"limit"}},
		{"records, bad since", "GET", "/v1/records?since=yesterday", ``, 400, api.CodeBadRequest, []string{"since"}},
		{"records, bad author", "GET", "/v1/records?author=me", ``, 400, api.CodeBadRequest, []string{"me"}},
		{"get, bad CID", "GET", "/v1/records/nope", ``, 400, api.CodeBadRequest, []string{"nope"}},
		{"verify, beyond the limit", "POST", "/v1/verify", string(make([]byte, maxRequestBody+1)), 413, api.CodeTooLarge, []string{"too large"}},
		{"schema of an unknown kind", "GET", "/v1/kinds/invoice", ``, 422, api.CodeInvalidRecord, []string{"invoice"}},
	}
	count0 := n.store.Count()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, e, raw := h.do(t, c.method, c.path, []byte(c.body))
			if status >= 500 {
				t.Fatalf("status %d: %s", status, raw)
			}
			if status != c.status || e.Code != c.code {
				t.Fatalf("status %d code %q (%s), want %d %q", status, e.Code, e.Message, c.status, c.code)
			}
			for _, s := range c.says {
				if !strings.Contains(e.Message, s) {
					t.Fatalf("message %q does not say %q", e.Message, s)
				}
			}
			t.Logf("%d %s: %s", status, e.Code, e.Message)
		})
	}
	if got := n.store.Count(); got != count0 {
		t.Fatalf("bad requests changed the store: %d records, before %d", got, count0)
	}
	// Garbage to verify is an answer, not an error: it says what is wrong.
	status, _, raw := h.do(t, "POST", "/v1/verify", []byte("not an envelope"))
	var v api.Verify
	if status != 200 || json.Unmarshal(raw, &v) != nil || v.OK || len(v.Errors) == 0 {
		t.Fatalf("verify of garbage: %d %s", status, raw)
	}
}

// TestBadFiles: a node's files edited wrong or damaged (config.toml,
// identity.key, the encryption key file) stop it with a message that names
// the file and says what is wrong, never a panic.
func TestBadFiles(t *testing.T) {
	home := t.TempDir()
	if _, err := Init(home, InitOptions{Name: "A", Listen: []string{"/ip4/127.0.0.1/tcp/0"}, API: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(home, ConfigFile)
	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, config string
		says         []string
	}{
		{"not TOML", "\x00\xff{{{", []string{cfgPath}},
		{"wrong type", strings.Replace(string(good), "listen = [", "listen = 5\nold = [", 1), []string{cfgPath, "listen"}},
		{"unknown setting", string(good) + "\nlisten_port = 4801\n", []string{"unknown setting", "listen_port"}},
		{"bad duration", strings.Replace(string(good), `sync_interval = "30s"`, `sync_interval = "soon"`, 1), []string{"soon"}},
		{"API off loopback", strings.Replace(string(good), `api = "127.0.0.1:0"`, `api = "0.0.0.0:4802"`, 1), []string{"loopback"}},
		{"negative quota", strings.Replace(string(good), "author_quota = 20000", "author_quota = -1", 1), []string{"author_quota"}},
		{"bad listen address", strings.Replace(string(good), `"/ip4/127.0.0.1/tcp/0"`, `"127.0.0.1:4801"`, 1), []string{"127.0.0.1:4801"}},
	} {
		if c.config == string(good) {
			t.Fatalf("%s: the edit did not apply to\n%s", c.name, good)
		}
		if err := os.WriteFile(cfgPath, []byte(c.config), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(home)
		if err == nil {
			t.Fatalf("%s: config loaded", c.name)
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("%s: %q does not say %q", c.name, err, s)
			}
		}
		t.Logf("%s: %v", c.name, err)
	}
	if err := os.WriteFile(cfgPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}

	// A damaged identity.
	idPath := filepath.Join(home, IdentityFile)
	id, err := os.ReadFile(idPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idPath, id[:len(id)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, WithoutNATPortMap()); err == nil || !strings.Contains(err.Error(), idPath) {
		t.Fatalf("a cut identity: %v", err)
	} else {
		t.Logf("cut identity: %v", err)
	}
	if err := os.WriteFile(idPath, id, 0o600); err != nil {
		t.Fatal(err)
	}

	// Encryption key files of the wrong size, or missing.
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, make([]byte, 31), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(t.TempDir(), InitOptions{EncryptionKeyFile: short}); err == nil || !strings.Contains(err.Error(), "exactly 32") {
		t.Fatalf("init with a 31-byte key: %v", err)
	}
	cfg.EncryptionKeyFile = short
	if _, err := New(cfg, WithoutNATPortMap()); err == nil || !strings.Contains(err.Error(), "31 bytes") {
		t.Fatalf("a node with a 31-byte key: %v", err)
	}
	cfg.EncryptionKeyFile = filepath.Join(t.TempDir(), "missing.key")
	if _, err := New(cfg, WithoutNATPortMap()); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("a node with a missing key file: %v", err)
	}
	// And the untouched home still opens.
	cfg.EncryptionKeyFile = ""
	n, err := New(cfg, WithoutNATPortMap())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
