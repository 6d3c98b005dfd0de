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
// (holding the token) asks the daemon for a one-time code and prints a
// link with it; the browser trades the code for a session cookie. The
// cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's
// page sends it) and host-only, and the session is bound to the Host it was
// made for; every request that changes state also carries the session's
// CSRF token in a header, which only the dashboard's own page can read
// (GET /v1/session), and a foreign Origin is refused. The Host checks of
// the API (checkHost) apply to all of it.

const (
	sessionCookie = "sangsaeng_session"
	csrfHeader    = "X-CSRF-Token"
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
	csrf string
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
func (s *sessions) redeem(code, host string) (id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found string
	for c, exp := range s.codes {
		if subtle.ConstantTimeCompare([]byte(c), []byte(code)) == 1 && time.Now().Before(exp) {
			found = c
		}
	}
	if found == "" {
		return "", false
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
	s.live[id] = &session{host: strings.ToLower(host), csrf: newSecret(), used: time.Now()}
	return id, true
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

// sessionAllows checks a request made with session v: the Origin, when
// the browser sends one, is the API's own, no other site made it, and a
// request that changes state carries the session's CSRF token.
func sessionAllows(v *session, r *http.Request) *api.Error {
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, "http://"+r.Host) {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "refused a request from the page of %s: the dashboard's session works only on its own page, http://%s", o, r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "refused a request another site's page made (Sec-Fetch-Site: %s)", site)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return nil
	}
	if got := r.Header.Get(csrfHeader); subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
		return api.Errorf(api.CodeForbidden, http.StatusForbidden, "missing or wrong %s header: reload the dashboard", csrfHeader)
	}
	return nil
}

// login trades the one-time code of a `sangsaeng dashboard` link for a
// session cookie and sends the browser on to the dashboard.
func (n *Node) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	id, ok := n.sessions.redeem(r.URL.Query().Get("code"), r.Host)
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`<!doctype html><meta charset="utf-8"><title>sangsaeng</title>` +
			`<p>이 로그인 링크는 이미 사용되었거나 만료되었습니다. 서버에서 <code>sangsaeng dashboard</code>를 다시 실행하세요.</p>` +
			`<p>This sign-in link was used already or has expired. Run <code>sangsaeng dashboard</code> on the server again.</p>`))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(sessionTTL.Seconds()),
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
