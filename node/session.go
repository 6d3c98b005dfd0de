package node

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// The dashboard signs in without the API token: `sangsaeng dashboard`
// (holding the token) asks the daemon for a one-time code and opens a link
// with it; the browser trades the code for a session of two halves. One is
// a cookie: HttpOnly (no script reads it), SameSite=Strict (no other
// site's page sends it), host-only. Cookies are not kept apart by port,
// though: every service on 127.0.0.1 a browser visits would receive it.
// So the other half, the session key, reaches the page once, in the
// fragment of the redirect after sign-in (never sent to a server), and
// the page keeps it in localStorage, which is the origin's own (scheme,
// host and port); it sends it with every request, in X-Session-Key (or,
// for a GET a page cannot add headers to, EventSource, a download, an
// image, in ?key=). A request with the cookie alone is refused. The
// session is bound to the Host it was made for, a foreign Origin or a
// cross-site fetch is refused, and the Host checks of the API (checkHost)
// apply to all of it.

const (
	sessionCookie = "sangsaeng_session"
	keyHeader     = "X-Session-Key"
	// loginCodeTTL is how long a one-time code is good for.
	loginCodeTTL = 2 * time.Minute
	// sessionTTL is how long a session lasts without being used.
	sessionTTL = 12 * time.Hour
	// maxSessions and maxCodes bound what the daemon keeps; the oldest go
	// first.
	maxSessions = 64
	maxCodes    = 16
)

// session is a signed-in browser.
type session struct {
	host string // the Host it was made for
	key  string // the half the page holds
	used time.Time
}

// sessions holds the one-time codes not yet used and the live sessions,
// in memory: a restarted daemon asks the operator to sign in again.
type sessions struct {
	mu    sync.Mutex
	codes map[string]time.Time // code → expiry
	live  map[string]*session  // session ID → session
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// newCode returns a fresh one-time code.
func (s *sessions) newCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codes == nil {
		s.codes = map[string]time.Time{}
	}
	now := time.Now()
	for c, exp := range s.codes {
		if now.After(exp) {
			delete(s.codes, c)
		}
	}
	for len(s.codes) >= maxCodes {
		var oldest string
		for c, exp := range s.codes {
			if oldest == "" || exp.Before(s.codes[oldest]) {
				oldest = c
			}
		}
		delete(s.codes, oldest)
	}
	c := newSecret()
	s.codes[c] = now.Add(loginCodeTTL)
	return c
}

// redeem uses up code and opens a session for host, or reports false.
func (s *sessions) redeem(code, host string) (id, key string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found string
	for c, exp := range s.codes {
		if subtle.ConstantTimeCompare([]byte(c), []byte(code)) == 1 && time.Now().Before(exp) {
			found = c
		}
	}
	if found == "" {
		return "", "", false
	}
	delete(s.codes, found)
	if s.live == nil {
		s.live = map[string]*session{}
	}
	for len(s.live) >= maxSessions {
		var oldest string
		for k, v := range s.live {
			if oldest == "" || v.used.Before(s.live[oldest].used) {
				oldest = k
			}
		}
		delete(s.live, oldest)
	}
	id = newSecret()
	v := &session{host: strings.ToLower(host), key: newSecret(), used: time.Now()}
	s.live[id] = v
	return id, v.key, true
}

// of returns the live session of request r, or nil.
func (s *sessions) of(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range s.live {
		if subtle.ConstantTimeCompare([]byte(id), []byte(c.Value)) != 1 {
			continue
		}
		if time.Since(v.used) > sessionTTL || !strings.EqualFold(v.host, r.Host) {
			return nil
		}
		v.used = time.Now()
		cp := *v
		return &cp
	}
	return nil
}

// end closes the session of r.
func (s *sessions) end(r *http.Request) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return
	}
	s.mu.Lock()
	delete(s.live, c.Value)
	s.mu.Unlock()
}

// sessionAllows checks a request made with session v: it carries the
// session key (in the header; a GET or HEAD may give it as ?key=), the
// Origin, when the browser sends one, is the API's own, and no other site
// made it.
func sessionAllows(v *session, r *http.Request) *api.Error {
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, "http://"+r.Host) {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "refused a request from the page of %s: the dashboard's session works only on its own page, http://%s", o, r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "refused a request another site's page made (Sec-Fetch-Site: %s)", site)
	}
	got := r.Header.Get(keyHeader)
	if got == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		got = r.URL.Query().Get("key")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(v.key)) != 1 {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "missing or wrong session key (%s): sign in again with `sangsaeng dashboard`", keyHeader)
	}
	return nil
}

// login trades the one-time code of a `sangsaeng dashboard` link for a
// session cookie and sends the browser on to the dashboard.
func (n *Node) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	id, key, ok := n.sessions.redeem(r.URL.Query().Get("code"), r.Host)
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`<!doctype html><meta charset="utf-8"><title>sangsaeng</title>` +
			`<p>이 로그인 링크는 이미 사용되었거나 만료되었습니다. 서버에서 <code>sangsaeng dashboard</code>를 다시 실행하세요.</p>` +
			`<p>This sign-in link was used already or has expired. Run <code>sangsaeng dashboard</code> on the server again.</p>`))
		return
	}
	n.sessions.end(r) // a browser signing in again leaves its old session
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(sessionTTL.Seconds()),
	})
	// The key in the fragment: the browser keeps it and sends it to no
	// server; the page moves it into localStorage and off the address bar.
	http.Redirect(w, r, "/#key="+key, http.StatusSeeOther)
}
