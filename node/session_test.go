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
// needs the session key beside the cookie, and the API's own Origin.
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
	loc := r.Header.Get("Location")
	key, ok := strings.CutPrefix(loc, "/#key=")
	if !ok || len(key) != 64 {
		t.Fatalf("login redirects to %q, want the session key in the fragment", loc)
	}
	if r := do("GET", "/login?code="+code.Code, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a code signs in twice: %d", r.StatusCode)
	}
	sess := map[string]string{"Cookie": sessionCookie + "=" + cookie.Value}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"Cookie": sess["Cookie"], "X-Session-Key": key}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if r := do("GET", "/v1/status", sess); r.StatusCode != http.StatusForbidden {
		t.Fatalf("GET with the cookie alone: %d, want 403", r.StatusCode)
	}
	sess["X-Session-Key"] = key
	r = do("GET", "/v1/session", sess)
	var s api.Session
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.Host == "" {
		t.Fatalf("session: %d %v", r.StatusCode, err)
	}
	if r := do("GET", "/v1/status", sess); r.StatusCode != http.StatusOK {
		t.Fatalf("GET with the session: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/status?key="+key, map[string]string{"Cookie": sess["Cookie"]}); r.StatusCode != http.StatusOK {
		t.Fatalf("GET with the cookie and ?key=: %d", r.StatusCode)
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
		{"no session key", map[string]string{"Cookie": sess["Cookie"], "Origin": srv.URL}, http.StatusForbidden},
		{"the key in the query (GET only)", map[string]string{"Cookie": sess["Cookie"]}, http.StatusForbidden},
		{"a wrong session key", with("X-Session-Key", "x"+key[1:]), http.StatusForbidden},
		{"a foreign Origin", with("Origin", "http://evil.example"), http.StatusForbidden},
		{"a same-site fetch", with("Sec-Fetch-Site", "same-site"), http.StatusForbidden},
	} {
		p := path
		if strings.Contains(tc.what, "query") {
			p += "?key=" + key
		}
		if r := do("POST", p, tc.hdr); r.StatusCode != tc.want {
			t.Errorf("POST with the session and %s: %d, want %d", tc.what, r.StatusCode, tc.want)
		}
	}
	if r := do("POST", path, with("Origin", srv.URL, "Content-Type", "application/json")); r.StatusCode != http.StatusOK {
		t.Errorf("POST with the session from its own page: %d, want 200", r.StatusCode)
	}
	if r := do("POST", "/v1/session/logout", map[string]string{"Cookie": sess["Cookie"]}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the key: %d, want 403", r.StatusCode)
	}
	if r := do("POST", "/v1/session/logout", with()); r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	if r := do("GET", "/v1/status", sess); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET after logout: %d", r.StatusCode)
	}
}
