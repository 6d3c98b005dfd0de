package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestAPIHost: a request that names the API by a host other than a loopback
// name or the configured address is refused with 421 and a message naming
// the host, even with the right token (DNS rebinding); loopback names with
// any port pass.
func TestAPIHost(t *testing.T) {
	n := startNode(t, "A")
	h := newAPIHarness(t, n)
	get := func(host, path string, token bool) (int, api.Error) {
		t.Helper()
		req, err := http.NewRequest("GET", h.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if token {
			req.Header.Set("Authorization", "Bearer "+h.token)
		}
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		if resp.StatusCode >= 400 {
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
				t.Fatalf("Host %q %s: status %d, body is not an API error: %q", host, path, resp.StatusCode, b)
			}
		}
		return resp.StatusCode, e
	}
	for _, host := range []string{"evil.example", "evil.example:4802", "127.0.0.1.evil.example", "localhost.evil.example", "10.0.0.1:4802", "[fe80::1]:4802", "0.0.0.0:4802", "[::ffff:8.8.8.8]:4802"} {
		for _, path := range []string{"/v1/id", "/metrics", "/"} {
			status, e := get(host, path, true)
			if status != http.StatusMisdirectedRequest || e.Code != api.CodeBadHost || !strings.Contains(e.Message, host) {
				t.Errorf("Host %q %s: status %d %+v, want 421 bad_host naming the host", host, path, status, e)
			}
		}
	}
	for _, host := range []string{"127.0.0.1:4802", "127.0.0.1", "127.1.2.3:9", "localhost:4802", "LOCALHOST", "[::1]:4802", "[::1]", strings.TrimPrefix(h.srv.URL, "http://"), n.cfg.API} {
		if status, e := get(host, "/v1/id", true); status != http.StatusOK {
			t.Errorf("Host %q: status %d %+v, want 200", host, status, e)
		}
	}
	if status, _ := get("evil.example", "/v1/id", false); status != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example without a token: status %d, want 421", status)
	}
}

// TestMetricsToken: /metrics needs the token unless metrics_public is set.
func TestMetricsToken(t *testing.T) {
	n := startNode(t, "A")
	h := newAPIHarness(t, n)
	resp, err := http.Get(h.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), api.TokenFile) {
		t.Fatalf("/metrics without a token: %d %s, want 401 naming %s", resp.StatusCode, b, api.TokenFile)
	}
	status, _, body := h.do(t, "GET", "/metrics", nil)
	if status != http.StatusOK || !strings.Contains(string(body), "sangsaeng_records_accepted_total") {
		t.Fatalf("/metrics with the token: %d %.200s", status, body)
	}

	n.cfg.MetricsPublic = true
	pub := newAPIHarness(t, n)
	resp, err = http.Get(pub.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "sangsaeng_records_accepted_total") {
		t.Fatalf("/metrics with metrics_public: %d %.200s", resp.StatusCode, b)
	}
	// The rest of the API still needs the token.
	resp, err = http.Get(pub.srv.URL + "/v1/id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/v1/id without a token, metrics_public set: %d", resp.StatusCode)
	}
}

// TestNoStateChangeOnGet: a GET on a route that changes state is refused by
// the method in its pattern, and changes nothing.
func TestNoStateChangeOnGet(t *testing.T) {
	n := startNode(t, "A")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := n.CreateChannel(ctx, "X", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, other := newKey(t)
	h := newAPIHarness(t, n)
	// Every route that changes something (server.go), asked with GET.
	changing := []string{
		"/v1/partners/" + other.String(),
		"/v1/channels/" + ch.String() + "/invite",
		"/v1/channels/" + ch.String() + "/remove-member",
		"/v1/channels/" + ch.String() + "/records",
		"/v1/channels/" + ch.String() + "/import",
		"/v1/disclose",
		"/v1/join",
		"/v1/profile",
		"/v1/verify",
		"/v1/keys/rotate",
		"/v1/keys/devices",
		"/v1/keys/revoke",
		"/v1/dashboard/code",
		"/v1/session/logout",
	}
	state := func() string {
		cfg, _ := os.ReadFile(filepath.Join(n.cfg.Home, "config.toml"))
		return fmt.Sprintf("%d %d %d %q", n.store.Count(), len(n.KeyLog().Entries), len(n.partners.all()), cfg)
	}
	before := state()
	for _, path := range append(changing, "/v1/partners", "/v1/channels", "/v1/channels/"+ch.String()+"/receipts") {
		status, _, _ := h.do(t, "GET", path, nil)
		if slices.Contains(changing, path) {
			if status < 400 {
				t.Errorf("GET %s: %d, want an error (the route takes no GET)", path, status)
			}
		} else if status != http.StatusOK {
			t.Errorf("GET %s: %d", path, status)
		}
		if now := state(); now != before {
			t.Fatalf("GET %s changed the node: %s, was %s", path, now, before)
		}
	}
}
