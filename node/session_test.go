package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestDashboardSession: a one-time code needs the API token; the code
// signs one browser in, once, with an HttpOnly, SameSite=Strict cookie;
// the session answers only under the Host it was made for; a request that
// changes state needs the session's CSRF token and the API's own Origin.
func TestDashboardSession(t *testing.T) {
	n := startNode(t, "A")
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	tok, err := os.ReadFile(filepath.Join(n.cfg.Home, api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(`{"peer": "`+n.self.String()+`"}`))
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	if r := do("POST", "/v1/dashboard/code", nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a code without the token: %d", r.StatusCode)
	}
	r := do("POST", "/v1/dashboard/code", map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(tok))})
	var code api.LoginCode
	if err := json.NewDecoder(r.Body).Decode(&code); err != nil || code.Code == "" {
		t.Fatalf("code: %d %v", r.StatusCode, err)
	}
	if r := do("GET", "/login?code=wrong", nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong code signs in: %d", r.StatusCode)
	}
	r = do("GET", "/login?code="+code.Code, nil)
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if r.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Domain != "" {
		t.Fatalf("login: %d, cookie %+v", r.StatusCode, cookie)
	}
	if r := do("GET", "/login?code="+code.Code, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a code signs in twice: %d", r.StatusCode)
	}
	sess := map[string]string{"Cookie": sessionCookie + "=" + cookie.Value}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Cookie": sess["Cookie"]}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	r = do("GET", "/v1/session", sess)
	var s api.Session
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.CSRF == "" {
		t.Fatalf("session: %d %v", r.StatusCode, err)
	}
	if r := do("GET", "/v1/status", sess); r.StatusCode != http.StatusOK {
		t.Fatalf("GET with the session: %d", r.StatusCode)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	other := strings.Replace(host, "127.0.0.1", "localhost", 1)
	for _, tc := range []struct {
		what string
		hdr  map[string]string
		want int
	}{
		{"another loopback Host", with("Host", other), http.StatusUnauthorized},
		{"a foreign Origin", with("Origin", "http://evil.example"), http.StatusForbidden},
		{"a cross-site fetch", with("Sec-Fetch-Site", "cross-site"), http.StatusForbidden},
	} {
		if r := do("GET", "/v1/status", tc.hdr); r.StatusCode != tc.want {
			t.Errorf("GET with the session and %s: %d, want %d", tc.what, r.StatusCode, tc.want)
		}
	}
	ch, err := n.CreateChannel(t.Context(), "x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/channels/" + ch.String() + "/invite"
	for _, tc := range []struct {
		what string
		hdr  map[string]string
		want int
	}{
		{"no CSRF token", with("Origin", srv.URL), http.StatusForbidden},
		{"a wrong CSRF token", with("X-CSRF-Token", "x"+s.CSRF[1:]), http.StatusForbidden},
		{"a foreign Origin", with("X-CSRF-Token", s.CSRF, "Origin", "http://evil.example"), http.StatusForbidden},
	} {
		if r := do("POST", path, tc.hdr); r.StatusCode != tc.want {
			t.Errorf("POST with the session and %s: %d, want %d", tc.what, r.StatusCode, tc.want)
		}
	}
	// Its own Origin and the token: the request reaches the handler (which
	// refuses to invite the node itself, with 400, not 403).
	if r := do("POST", path, with("X-CSRF-Token", s.CSRF, "Origin", srv.URL, "Content-Type", "application/json")); r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized {
		t.Errorf("POST with the session, its Origin and the CSRF token: %d", r.StatusCode)
	}
	if r := do("POST", "/v1/session/logout", with("X-CSRF-Token", s.CSRF)); r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/status", sess); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET after logout: %d", r.StatusCode)
	}
}
