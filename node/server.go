package node

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// maxRequestBody bounds API request bodies: a record plus JSON overhead.
const maxRequestBody = 2 * protocol.MaxRecordSize

// Handler returns the local API: JSON endpoints under /v1, server-sent
// events at /v1/events, Prometheus metrics at /metrics, the dashboard at /.
//
// Every request must name the API by a loopback Host (localhost,
// 127.0.0.0/8 or [::1], any port) or by the configured API address, or it
// is refused with 421: a web page that reaches the API through DNS
// rebinding names its own host. Every endpoint but the dashboard, which
// holds no data, needs the bearer token from api.token; /metrics too,
// unless metrics_public is set in config.toml. No GET changes the node's
// state (GET /v1/records/{cid} may store a record fetched from a partner,
// as a cache of what gossip or sync would bring).
func (n *Node) Handler() http.Handler {
	tokFile := filepath.Join(n.cfg.Home, api.TokenFile)
	tok, err := os.ReadFile(tokFile)
	token := strings.TrimSpace(string(tok))
	if err != nil || token == "" {
		n.log.Error("no API token; every API call will be refused", "file", tokFile, "err", err)
	}
	bearer := func(r *http.Request) (given, ok bool) {
		got, given := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return given, given && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
	}
	unauthorized := api.Errorf(api.CodeUnauthorized, http.StatusUnauthorized,
		"missing or wrong API token (it is in %s), and no dashboard session (open the link `sangsaeng dashboard` prints)", tokFile)
	// withSession returns the request's dashboard session, where it is
	// one and within its rules (session.go), or answers why not and
	// returns nil.
	withSession := func(w http.ResponseWriter, r *http.Request) *session {
		v := n.sessions.of(r)
		if v == nil {
			writeError(w, unauthorized)
			return nil
		}
		if e := sessionAllows(v, r); e != nil {
			writeError(w, e)
			return nil
		}
		return v
	}
	// authorized admits the bearer token, or a dashboard session.
	authorized := func(w http.ResponseWriter, r *http.Request) bool {
		if given, ok := bearer(r); ok {
			return true
		} else if given {
			writeError(w, unauthorized)
			return false
		}
		return withSession(w, r) != nil
	}
	mux := http.NewServeMux()
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !authorized(w, r) {
				return
			}
			limit := int64(maxRequestBody)
			if pattern == importRoute {
				limit = maxImportBytes
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			// A browser signed in to the dashboard may open API answers:
			// none is kept in a cache or read as anything but its type.
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			v, err := fn(w, r)
			if err != nil {
				writeError(w, apiError(err))
				return
			}
			if v == nil {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if raw, ok := v.(rawBody); ok {
				if raw.ctype == "" { // the handler wrote the answer itself
					return
				}
				w.Header().Set("Content-Type", raw.ctype)
				_, _ = w.Write(raw.b)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			_ = enc.Encode(v)
		})
	}
	h("GET /v1/id", n.apiID)
	h("GET /v1/peers", n.apiPeers)
	h("GET /v1/status", func(http.ResponseWriter, *http.Request) (any, error) { return n.Status() })
	h("GET /v1/partners", n.apiPartners)
	h("POST /v1/partners", n.apiAddPartner)
	h("DELETE /v1/partners/{id}", n.apiRemovePartner)
	h("GET /v1/channels", n.apiChannels)
	h("POST /v1/channels", n.apiCreateChannel)
	h("GET /v1/channels/{ch}", n.apiChannel)
	h("POST /v1/channels/{ch}/invite", n.apiInvite)
	h("POST /v1/channels/{ch}/remove-member", n.apiRemoveMember)
	h("POST /v1/channels/{ch}/records", n.apiPublish)
	h(importRoute, n.apiImport)
	h("GET /v1/channels/{ch}/export", n.apiExport)
	h("GET /v1/trace/{cid}", n.apiTrace)
	h("GET /v1/pcf/{cid}", func(_ http.ResponseWriter, r *http.Request) (any, error) {
		c, err := parseCID(r.PathValue("cid"))
		if err != nil {
			return nil, err
		}
		return n.PCF(c)
	})
	h("POST /v1/disclose", n.apiDisclose)
	h("GET /v1/orders", n.apiOrders)
	h("GET /v1/orders/{docId}", n.apiOrder)
	h("POST /v1/join", n.apiJoin)
	h("PUT /v1/profile", n.apiProfile)
	h("GET /v1/records", n.apiRecords)
	h("GET /v1/records/{cid}", n.apiGet)
	h("POST /v1/verify", n.apiVerify)
	h("GET /v1/verify/{cid}", n.apiVerifyCID)
	h("GET /v1/kinds", func(http.ResponseWriter, *http.Request) (any, error) { return protocol.Kinds(), nil })
	h("GET /v1/kinds/{kind}", n.apiSchema)
	h("GET /v1/events", n.apiEvents)
	h("GET /v1/records/{cid}/backlinks", n.apiBacklinks)
	h("GET /v1/qr", apiQR)
	h("GET /v1/channels/{ch}/receipts", n.apiReceipts)
	h("POST /v1/channels/{ch}/receipts", n.apiRequestReceipts)
	h("GET /v1/keys", func(http.ResponseWriter, *http.Request) (any, error) { return n.keysView(), nil })
	h("POST /v1/keys/rotate", n.apiRotateKey)
	h("POST /v1/keys/devices", n.apiAddDeviceKey)
	h("POST /v1/keys/revoke", n.apiRevokeKey)
	// The dashboard's sign-in: a one-time code for the token's holder, a
	// check of the session for its page, and signing out.
	mux.HandleFunc("POST /v1/dashboard/code", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := bearer(r); !ok {
			writeError(w, api.Errorf(api.CodeUnauthorized, http.StatusUnauthorized, "a sign-in code needs the API token (it is in %s)", tokFile))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.LoginCode{Code: n.sessions.newCode(), ExpiresIn: int(loginCodeTTL.Seconds())})
	})
	mux.HandleFunc("GET /v1/session", func(w http.ResponseWriter, r *http.Request) {
		v := withSession(w, r)
		if v == nil {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(api.Session{Host: v.host})
	})
	mux.HandleFunc("POST /v1/session/logout", func(w http.ResponseWriter, r *http.Request) {
		if withSession(w, r) == nil {
			return
		}
		n.sessions.end(r)
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /login", n.login)
	metricsHandler := promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// The labels name partners and channels.
		if n.cfg.MetricsPublic || authorized(w, r) {
			metricsHandler.ServeHTTP(w, r)
		}
	})
	// The dashboard's files hold no data; the page calls the API with its
	// session. No inline script or style: the policy allows only these.
	for path, f := range map[string]struct{ name, ctype string }{
		"GET /{$}":               {"dashboard.html", "text/html; charset=utf-8"},
		"GET /dashboard.js":      {"dashboard.js", "text/javascript; charset=utf-8"},
		"GET /dashboard.css":     {"dashboard.css", "text/css; charset=utf-8"},
		"GET /dashboard-i18n.js": {"dashboard-i18n.js", "text/javascript; charset=utf-8"},
	} {
		body, err := dashboardFiles.ReadFile(f.name)
		if err != nil {
			panic(err) // embedded at build time
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", f.ctype)
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
			w.Header().Set("X-Frame-Options", "DENY")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(body)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeNotFound, http.StatusNotFound, "no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return n.checkHost(mux)
}

// checkHost refuses requests whose Host is neither a loopback name nor the
// configured API address.
func (n *Node) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowedHost(r.Host, n.cfg.API) {
			writeError(w, api.Errorf(api.CodeBadHost, http.StatusMisdirectedRequest,
				"refused Host %q: the local API answers only to localhost, 127.0.0.1, [::1] or its configured address %s; call it by one of those (a web page that reaches it under another name is refused)",
				r.Host, n.cfg.API))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHost reports whether host, the Host of a request, names the API:
// localhost, an address of 127.0.0.0/8 or ::1, with any port or none, or
// the configured address apiAddr itself.
func allowedHost(host, apiAddr string) bool {
	if host == "" {
		return false
	}
	if strings.EqualFold(host, apiAddr) {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(name)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// dashboardFiles are the operator's dashboard, served at /.
//
//go:embed dashboard.html dashboard.js dashboard.css dashboard-i18n.js
var dashboardFiles embed.FS

// rawBody is a non-JSON answer.
type rawBody struct {
	ctype string
	b     []byte
}

func writeError(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// badRequest is an error in what the caller sent.
type badRequest struct{ err error }

func (b badRequest) Error() string { return b.err.Error() }
func (b badRequest) Unwrap() error { return b.err }

func badf(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

// apiError maps an error to its API code and HTTP status.
func apiError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	code, status := api.CodeInternal, http.StatusInternalServerError
	switch {
	case errors.As(err, &mbe), errors.Is(err, protocol.ErrTooLarge):
		code, status = api.CodeTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, protocol.ErrInvalidBody), errors.Is(err, protocol.ErrUnknownKind), errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrBadJSON):
		code, status = api.CodeInvalidRecord, http.StatusUnprocessableEntity
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errNoChannel), errors.Is(err, errNoOrder):
		code, status = api.CodeNotFound, http.StatusNotFound
	case errors.Is(err, ErrNotJoined), errors.Is(err, ErrNotMember), errors.Is(err, ErrRemoved), errors.Is(err, ErrRemovedFinal):
		code, status = api.CodeNotMember, http.StatusForbidden
	case errors.Is(err, ErrNotAdmin):
		code, status = api.CodeNotAdmin, http.StatusForbidden
	case errors.Is(err, errAmbiguous):
		code, status = api.CodeAmbiguous, http.StatusConflict
	case errors.As(err, new(badRequest)), errors.Is(err, ErrBadInvite):
		code, status = api.CodeBadRequest, http.StatusBadRequest
	case errors.Is(err, errClosed), errors.Is(err, context.DeadlineExceeded):
		code, status = api.CodeUnavailable, http.StatusServiceUnavailable
	}
	return &api.Error{Code: code, Message: err.Error(), Status: status}
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body: %w (the limit is %d bytes)", protocol.ErrTooLarge, mbe.Limit)
		}
		return badf("request body is not the expected JSON: %v", err)
	}
	return nil
}

func parsePeer(s string) (peer.ID, error) {
	p, err := peer.Decode(s)
	if err != nil {
		return "", badf("%q is not a peer ID (they look like 12D3KooW…): %v", s, err)
	}
	return p, nil
}

var (
	errNoOrder   = errors.New("no such order")
	errNoChannel = errors.New("no such channel")
	errAmbiguous = errors.New("channel name is ambiguous")
)

// channelParam resolves the request's optional ?channel= (ID or name);
// cid.Undef when there is none.
func (n *Node) channelParam(r *http.Request) (cid.Cid, error) {
	s := r.URL.Query().Get("channel")
	if s == "" {
		return cid.Undef, nil
	}
	return n.resolveChannel(s)
}

// resolveChannel finds a channel by ID or by unambiguous name.
func (n *Node) resolveChannel(ref string) (cid.Cid, error) {
	if c, err := cid.Decode(ref); err == nil {
		if _, ok := n.gov.channel(c); ok {
			return c, nil
		}
		return cid.Undef, fmt.Errorf("%w: %s (see `sangsaeng channel ls`)", errNoChannel, ref)
	}
	ids := n.gov.byName(ref)
	switch len(ids) {
	case 0:
		return cid.Undef, fmt.Errorf("%w named %q (see `sangsaeng channel ls`)", errNoChannel, ref)
	case 1:
		return ids[0], nil
	}
	return cid.Undef, fmt.Errorf("%w: %d channels are named %q; use the channel ID", errAmbiguous, len(ids), ref)
}

func (n *Node) apiID(http.ResponseWriter, *http.Request) (any, error) {
	name, _ := n.profile()
	return api.ID{ID: n.self.String(), Name: name, Addrs: n.addrs(), Reachability: n.Reachability()}, nil
}

func (n *Node) apiPeers(http.ResponseWriter, *http.Request) (any, error) {
	out := []api.Peer{}
	for _, p := range n.host.Network().Peers() {
		ap := api.Peer{ID: p.String(), Name: n.gov.name(p), Addrs: []string{}, Channels: []string{}}
		for _, c := range n.host.Network().ConnsToPeer(p) {
			ap.Addrs = append(ap.Addrs, c.RemoteMultiaddr().String())
		}
		ap.LatencyMs = float64(n.host.Peerstore().LatencyEWMA(p).Microseconds()) / 1000
		for _, ch := range n.gov.shared(p) {
			ap.Channels = append(ap.Channels, ch.String())
		}
		slices.Sort(ap.Channels)
		out = append(out, ap)
	}
	slices.SortFunc(out, func(a, b api.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (n *Node) apiPartners(http.ResponseWriter, *http.Request) (any, error) {
	out := []api.Partner{}
	for p, e := range n.partners.all() {
		name := e.Name
		if name == "" {
			name = n.gov.name(p)
		}
		out = append(out, api.Partner{ID: p.String(), Name: name, Addrs: append([]string{}, e.Addrs...)})
	}
	slices.SortFunc(out, func(a, b api.Partner) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (n *Node) apiAddPartner(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.Partner
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	p, err := parsePeer(req.ID)
	if err != nil {
		return nil, err
	}
	var addrs []ma.Multiaddr
	for _, s := range req.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, badf("address %q is not a multiaddr (like /ip4/203.0.113.7/tcp/4801): %v", s, err)
		}
		if _, last := ma.SplitLast(a); last != nil && last.Protocol().Code == ma.P_P2P {
			a, _ = ma.SplitLast(a)
		}
		addrs = append(addrs, a)
	}
	if err := n.AddPartner(r.Context(), p, addrs, req.Name); err != nil {
		return nil, err
	}
	return nil, nil
}

func (n *Node) apiRemovePartner(_ http.ResponseWriter, r *http.Request) (any, error) {
	p, err := parsePeer(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !n.partners.has(p) {
		return nil, fmt.Errorf("partner %s: %w", p, store.ErrNotFound)
	}
	return nil, n.RemovePartner(p)
}

// channelView builds the API shape of a channel.
func (n *Node) channelView(ch cid.Cid) (*api.Channel, error) {
	snap, ok := n.gov.channel(ch)
	if !ok {
		return nil, fmt.Errorf("%w: %s", errNoChannel, ch)
	}
	v := &api.Channel{ID: ch.String(), Name: snap.name, Admins: []string{}, Members: []string{}, Heads: map[string]uint64{}}
	for _, p := range snap.admins {
		v.Admins = append(v.Admins, p.String())
	}
	for _, p := range snap.members {
		v.Members = append(v.Members, p.String())
	}
	if len(snap.removed) > 0 {
		v.Removed = map[string]uint64{}
		for p, last := range snap.removed {
			v.Removed[p.String()] = last
		}
	}
	heads, err := n.store.Heads(ch)
	if err != nil {
		return nil, err
	}
	for p, h := range heads {
		v.Heads[p.String()] = h
	}
	for p, st := range n.sync.statusOf(ch) {
		ss := api.SyncStatus{Peer: p.String(), Behind: st.behind, Received: st.received, Error: st.err}
		if !st.last.IsZero() {
			ss.Last = st.last.UTC().Format(time.RFC3339)
		}
		v.Sync = append(v.Sync, ss)
	}
	slices.SortFunc(v.Sync, func(a, b api.SyncStatus) int { return strings.Compare(a.Peer, b.Peer) })
	forks, err := n.store.Forks(ch)
	if err != nil {
		return nil, err
	}
	for _, f := range forks {
		af := api.Fork{Author: f.Author.String(), Seq: f.Seq}
		for _, c := range f.CIDs {
			af.CIDs = append(af.CIDs, c.String())
		}
		v.Forks = append(v.Forks, af)
		if !slices.Contains(v.Flagged, af.Author) {
			v.Flagged = append(v.Flagged, af.Author)
		}
	}
	return v, nil
}

func (n *Node) apiChannels(http.ResponseWriter, *http.Request) (any, error) {
	out := []api.Channel{}
	for _, ch := range n.gov.joined() {
		v, err := n.channelView(ch)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b api.Channel) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return out, nil
}

func (n *Node) apiChannel(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	return n.channelView(ch)
}

func (n *Node) apiCreateChannel(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.CreateChannel
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	var members []peer.ID
	for _, s := range req.Members {
		p, err := parsePeer(s)
		if err != nil {
			return nil, err
		}
		members = append(members, p)
	}
	ch, err := n.CreateChannel(r.Context(), req.Name, req.Description, members)
	if err != nil {
		return nil, err
	}
	return n.channelView(ch)
}

func (n *Node) apiInvite(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	var req api.InviteRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	p, err := parsePeer(req.Peer)
	if err != nil {
		return nil, err
	}
	code, err := n.Invite(r.Context(), ch, p)
	if err != nil {
		return nil, err
	}
	return api.Invite{Code: code}, nil
}

func (n *Node) apiJoin(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	ch, err := n.Join(r.Context(), req.Code)
	if err != nil {
		return nil, err
	}
	return n.channelView(ch)
}

func (n *Node) apiRemoveMember(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	var req api.RemoveMember
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	p, err := parsePeer(req.Peer)
	if err != nil {
		return nil, err
	}
	if err := n.RemoveMember(r.Context(), ch, p); err != nil {
		return nil, err
	}
	return n.channelView(ch)
}

func (n *Node) apiPublish(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	var req api.Publish
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Kind == "" {
		return nil, badf("kind is missing; see `sangsaeng kinds`")
	}
	if len(req.Body) == 0 {
		return nil, badf("body is missing")
	}
	body, err := protocol.ParseBody(req.Body)
	if err != nil {
		return nil, err
	}
	var links []protocol.Link
	for i, l := range req.Links {
		c, err := cid.Decode(l.CID)
		if err != nil {
			return nil, badf("links/%d: %q is not a CID: %v", i, l.CID, err)
		}
		links = append(links, protocol.Link{Rel: l.Rel, CID: c})
	}
	s, err := n.Publish(r.Context(), ch, req.Kind, body, links)
	if err != nil {
		return nil, err
	}
	return api.Published{CID: s.CID.String(), Seq: s.Record.Seq}, nil
}

func (n *Node) apiProfile(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.Profile
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	return nil, n.SetProfile(r.Context(), req.Name, req.BRN)
}

func parseCID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, badf("%q is not a CID (they look like bafyrei…): %v", s, err)
	}
	return c, nil
}

func (n *Node) apiGet(_ http.ResponseWriter, r *http.Request) (any, error) {
	c, err := parseCID(r.PathValue("cid"))
	if err != nil {
		return nil, err
	}
	s, err := n.record(c)
	if err != nil {
		return nil, err
	}
	if s == nil {
		// Linked records and attachments may be held only by partners.
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if s, err = n.Fetch(ctx, c); err != nil {
			return nil, err
		}
	}
	if raw := r.URL.Query().Get("raw"); raw != "" && raw != "0" {
		return rawBody{ctype: "application/octet-stream", b: s.Envelope}, nil
	}
	return s.JSON()
}

// verify checks an envelope as a record arriving from a partner would be
// checked, and its place in the author's chain as far as the store holds it.
func (n *Node) verify(env []byte) *api.Verify {
	v := &api.Verify{Errors: []string{}}
	s, err := protocol.OpenDelegated(env) // the author's key log decides the signer (gov.check)
	if err != nil {
		if c, cerr := protocol.EnvelopeCID(env); cerr == nil {
			v.CID = c.String()
		}
		v.Errors = append(v.Errors, "signature: "+err.Error())
		return v
	}
	v.CID, v.Author, v.Signer = s.CID.String(), s.Record.Author.String(), s.Signer.String()
	v.Key = n.keyNote(s)
	if err := n.gov.check(s); err != nil {
		v.Errors = append(v.Errors, "membership: "+err.Error())
	}
	if err := protocol.ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
		v.Errors = append(v.Errors, "schema: "+err.Error())
	}
	if s.Record.Kind == protocol.KindDisclosure {
		if o, err := protocol.Disclosed(s.Record.Body); err == nil {
			v.Disclosed = &api.Disclosed{CID: o.CID.String(), Kind: o.Record.Kind, Author: o.Record.Author.String(), AuthorName: n.gov.name(o.Record.Author),
				Channel: o.ChannelOf().String(), Seq: o.Record.Seq, Time: time.UnixMilli(o.Record.Time).UTC().Format(time.RFC3339),
				Membership: "not checked: this node is not in the original's channel, so the signature proves who signed it, not that its author belongs to that channel"}
			if n.gov.isJoined(o.ChannelOf()) {
				v.Disclosed.Membership = "checked"
				if err := n.gov.check(o); err != nil {
					v.Disclosed.Membership = "refused: " + err.Error()
					v.Errors = append(v.Errors, "disclosed record's membership: "+err.Error())
				}
			}
		}
	}
	ch := s.ChannelOf()
	if s.Record.Seq > 1 {
		prev, err := n.store.ByAuthor(ch, s.Record.Author, s.Record.Seq-1, s.Record.Seq-1)
		switch {
		case err != nil:
			v.Errors = append(v.Errors, "chain: "+err.Error())
		case len(prev) == 0:
			v.Errors = append(v.Errors, fmt.Sprintf("chain: seq %d of the author is not held here, so the prev link is unchecked", s.Record.Seq-1))
		default:
			if err := protocol.CheckNext(prev[0], s); err != nil {
				v.Errors = append(v.Errors, "chain: "+err.Error())
			}
		}
	}
	if held, err := n.store.ByAuthor(ch, s.Record.Author, s.Record.Seq, s.Record.Seq); err == nil && len(held) == 1 && held[0].CID != s.CID {
		v.Errors = append(v.Errors, fmt.Sprintf("chain: seq %d is held by another record, %s: this one is fork evidence", s.Record.Seq, held[0].CID))
	}
	v.OK = len(v.Errors) == 0
	return v
}

func (n *Node) apiVerify(_ http.ResponseWriter, r *http.Request) (any, error) {
	env, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("envelope: %w (the limit is %d bytes)", protocol.ErrTooLarge, protocol.MaxEnvelopeSize)
		}
		return nil, err
	}
	return n.verify(env), nil
}

func (n *Node) apiVerifyCID(_ http.ResponseWriter, r *http.Request) (any, error) {
	c, err := parseCID(r.PathValue("cid"))
	if err != nil {
		return nil, err
	}
	s, err := n.store.Get(c)
	if err != nil {
		return nil, err
	}
	v := n.verify(s.Envelope)
	return v, nil
}

func (n *Node) apiSchema(_ http.ResponseWriter, r *http.Request) (any, error) {
	kind := r.PathValue("kind")
	b, ok := protocol.Schema(kind)
	if !ok {
		return nil, fmt.Errorf("%w %q (see `sangsaeng kinds`)", protocol.ErrUnknownKind, kind)
	}
	return rawBody{ctype: "application/schema+json", b: b}, nil
}

// importRoute takes a file to import as its body, up to maxImportBytes.
const importRoute = "POST /v1/channels/{ch}/import"

// apiImport imports the CSV, XLSX or EPCIS file in the body (see
// Node.Import).
// The options are query parameters: kind, format, encoding, sheet, file,
// dry_run, and map, a JSON object of the company's headers to field
// names. With Accept: application/x-ndjson the answer is a stream of
// {"progress": …} lines and a last {"report": …} or {"error": …}.
func (n *Node) apiImport(w http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	o := api.ImportOptions{Kind: q.Get("kind"), Format: q.Get("format"), Encoding: q.Get("encoding"), Sheet: q.Get("sheet"), File: q.Get("file")}
	if o.Kind == "" && o.Format != interchange.FormatEPCIS {
		return nil, badf("kind is missing: one of %s", strings.Join(interchange.Kinds(), ", "))
	}
	switch v := q.Get("dry_run"); v {
	case "", "0", "false":
	case "1", "true":
		o.DryRun = true
	default:
		return nil, badf("dry_run %q: want true or false", v)
	}
	if m := q.Get("map"); m != "" {
		if err := json.Unmarshal([]byte(m), &o.Map); err != nil {
			return nil, badf("map is not a JSON object of column headers to field names: %v", err)
		}
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		return n.Import(r.Context(), ch, r.Body, o, nil)
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var mu sync.Mutex
	send := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(v)
		if fl != nil {
			fl.Flush()
		}
	}
	rep, err := n.Import(r.Context(), ch, r.Body, o, func(p api.ImportProgress) { send(map[string]any{"progress": p}) })
	if err != nil {
		send(map[string]any{"error": apiError(err), "report": rep})
	} else {
		send(map[string]any{"report": rep})
	}
	return rawBody{}, nil
}

// apiDisclose passes a record to another channel (Node.Disclose).
func (n *Node) apiDisclose(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req api.Disclose
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	c, err := parseCID(req.CID)
	if err != nil {
		return nil, err
	}
	ch, err := n.resolveChannel(req.Channel)
	if err != nil {
		return nil, err
	}
	s, err := n.Disclose(r.Context(), c, ch, req.Note)
	if err != nil {
		return nil, err
	}
	return api.Published{CID: s.CID.String(), Seq: s.Record.Seq}, nil
}

// apiTrace follows a record's links: ?down=true for what was made from it,
// ?depth=N levels (10).
func (n *Node) apiTrace(_ http.ResponseWriter, r *http.Request) (any, error) {
	c, err := cid.Decode(r.PathValue("cid"))
	if err != nil {
		return nil, badf("%q is not a CID: %v", r.PathValue("cid"), err)
	}
	depth := 10
	if d := r.URL.Query().Get("depth"); d != "" {
		if depth, err = strconv.Atoi(d); err != nil || depth < 1 || depth > 100 {
			return nil, badf("depth %q: want 1 to 100", d)
		}
	}
	down := r.URL.Query().Get("down") == "true" || r.URL.Query().Get("down") == "1"
	return n.Trace(c, down, depth)
}

// apiOrders lists the orders' lifecycles: ?channel= one channel,
// ?status= open, late, done, rejected or cancelled.
func (n *Node) apiOrders(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.channelParam(r)
	if err != nil {
		return nil, err
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", "open", "late", "done", "rejected", "cancelled":
	default:
		return nil, badf("status %q: want open, late, done, rejected or cancelled", status)
	}
	all, err := n.Orders(ch, time.Now())
	if err != nil {
		return nil, err
	}
	out := []api.Order{}
	for _, o := range all {
		// Late orders are open ones too.
		if status == "" || o.Status == status || (status == "open" && o.Status == "late") {
			out = append(out, o)
		}
	}
	return out, nil
}

// apiOrder is one order's lifecycle.
func (n *Node) apiOrder(_ http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.channelParam(r)
	if err != nil {
		return nil, err
	}
	return n.Order(ch, r.PathValue("docId"), time.Now())
}

// apiExport writes a channel's records as the export's format says (see
// Node.Export); the options are query parameters: format, kind, since,
// lang, encoding, id_base, cid, with_links, cross_channel.
func (n *Node) apiExport(w http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.resolveChannel(r.PathValue("ch"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	o := api.ExportOptions{Format: q.Get("format"), Kind: q.Get("kind"), Since: q.Get("since"), Lang: q.Get("lang"), Encoding: q.Get("encoding"), IDBase: q.Get("id_base"),
		CID: q.Get("cid"), WithLinks: q.Get("with_links") == "true" || q.Get("with_links") == "1",
		CrossChannel: q.Get("cross_channel") == "true" || q.Get("cross_channel") == "1"}
	ctype := map[string]string{"": "application/x-ndjson", "jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "epcis": "application/ld+json", "car": "application/vnd.ipld.car",
		"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[o.Format]
	if o.Format == "csv" && strings.EqualFold(o.Encoding, "cp949") {
		ctype = "text/csv; charset=cp949"
	}
	// Problems found before anything is written get an error answer;
	// the body is buffered up to its first write, so a bad option
	// costs no half-written file.
	bw := &firstWrite{w: w, ctype: ctype}
	if err := n.Export(r.Context(), ch, bw, o); err != nil {
		if !bw.started {
			return nil, err
		}
		// Half a file was sent: break the connection, so that the
		// client sees an error rather than a short file.
		n.log.Warn("export cut short", "channel", ch, "err", err)
		panic(http.ErrAbortHandler)
	}
	if !bw.started {
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(http.StatusOK)
	}
	return rawBody{}, nil
}

// firstWrite sets the content type and status on the first write.
type firstWrite struct {
	w       http.ResponseWriter
	ctype   string
	started bool
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if !f.started {
		f.started = true
		f.w.Header().Set("Content-Type", f.ctype)
		f.w.WriteHeader(http.StatusOK)
	}
	return f.w.Write(p)
}

// parseEventID reads where a client wants its stream to start: 0 (every
// record), a number of this store's numbering, or an id as the stream
// gives them, EPOCH-N. An id of another epoch (the store was rebuilt
// since), or beyond the last number handed out (it was restored from an
// older backup), is refused: its number would name another place.
func (n *Node) parseEventID(what, v string) (uint64, error) {
	epoch, num, hasEpoch := strings.Cut(v, "-")
	if !hasEpoch {
		num = epoch
	}
	x, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, badf("%s %q is not an event id: ids are what follows \"id:\" in the stream, such as %s-42 (0 replays every record)", what, v, n.store.ArrivalEpoch())
	}
	if x != 0 && ((hasEpoch && epoch != n.store.ArrivalEpoch()) || x > n.store.LastArrival()) {
		return 0, api.Errorf(api.CodeStaleEventID, http.StatusConflict,
			"%s %q is from another numbering of this node's records (its store was restored from a backup or rebuilt since); this node now numbers them %s-N. Start again with since=0 and skip the records already seen by their CID",
			what, v, n.store.ArrivalEpoch())
	}
	return x, nil
}

// eventPageBytes bounds the envelopes an event stream reads from the store
// at once, and so what one client costs in memory.
const eventPageBytes = 1 << 20

// eventWriteTimeout is how long a client may take to read a page of
// events before its stream is closed (it resumes with Last-Event-ID).
const eventWriteTimeout = time.Minute

// apiEvents streams accepted records as server-sent events, in the order
// the store took them: each event's id is the record's arrival number (see
// docs/design.md, "Event stream"). A client that reconnects with
// Last-Event-ID, or asks ?since=N, gets every record after that number,
// then the new ones as they come, with no gap and no repeat. Without
// either, the stream starts with the records that arrive from now on. The
// stream reads from the store, a page of at most eventPageBytes at a time,
// so a slow client falls behind without losing anything or growing a
// queue; one that stops reading for eventWriteTimeout is disconnected.
func (n *Node) apiEvents(w http.ResponseWriter, r *http.Request) (any, error) {
	ch, err := n.channelParam(r)
	if err != nil {
		return nil, err
	}
	after := n.store.LastArrival()
	from, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if from == "" {
		from, what = r.URL.Query().Get("since"), "since"
	}
	if from != "" {
		v, err := n.parseEventID(what, from)
		if err != nil {
			return nil, err
		}
		after = v
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return nil, errors.New("streaming is not supported by this connection")
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	epoch := n.store.ArrivalEpoch()
	// The place the stream starts from, first: a client that started
	// with the next record and reconnects before any comes resumes
	// from here, not from what is the next record by then.
	fmt.Fprintf(w, ": sangsaeng events\nretry: 1000\nid: %s-%d\n\n", epoch, after)
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	// A stream a dashboard session opened ends with the session.
	viaSession := !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	var buf []byte
	for {
		// Taken before the read, so that a record stored after it wakes
		// the loop.
		wake, closed := n.events.next()
		if closed {
			return rawBody{}, nil
		}
		recs, next, err := n.store.Arrivals(after, ch, eventPageBytes)
		if err != nil {
			n.log.Warn("event stream: cannot read the store", "err", err)
			j, _ := json.Marshal(api.Error{Code: api.CodeInternal, Message: err.Error()})
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", j)
			fl.Flush()
			return rawBody{}, nil
		}
		if len(recs) > 0 || next != after {
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			for _, a := range recs {
				j, err := a.Record.MarshalJSON()
				if err != nil {
					// Never skipped: the stream ends here, and the
					// client learns why.
					n.log.Warn("event stream: a record cannot be shown", "cid", a.Record.CID, "err", err)
					j, _ := json.Marshal(api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("record %s (event %s-%d) cannot be shown as JSON: %v", a.Record.CID, epoch, a.Seq, err)})
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", j)
					fl.Flush()
					return rawBody{}, nil
				}
				buf = fmt.Appendf(buf[:0], "id: %s-%d\nevent: record\ndata: %s\n\n", epoch, a.Seq, j)
				if _, err := w.Write(buf); err != nil {
					return rawBody{}, nil
				}
			}
			if len(recs) == 0 {
				// Records of other channels only: move the client's
				// place on, so that it need not look at them again.
				buf = fmt.Appendf(buf[:0], "id: %s-%d\n\n", epoch, next)
				if _, err := w.Write(buf); err != nil {
					return rawBody{}, nil
				}
			}
			fl.Flush()
			after = next
			continue
		}
		select {
		case <-r.Context().Done():
			return rawBody{}, nil
		case <-keepalive.C:
			if viaSession && n.sessions.of(r) == nil {
				return rawBody{}, nil // its dashboard session ended (signed out, expired)
			}
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return rawBody{}, nil
			}
			fl.Flush()
		case <-wake:
		}
	}
}

// apiBacklinks lists the records the node holds that link to a record.
func (n *Node) apiBacklinks(_ http.ResponseWriter, r *http.Request) (any, error) {
	c, err := parseCID(r.PathValue("cid"))
	if err != nil {
		return nil, err
	}
	bl, err := n.store.Backlinks(c)
	if err != nil {
		return nil, err
	}
	out := make([]api.Backlink, 0, len(bl))
	for _, b := range bl {
		e := api.Backlink{CID: b.From.String(), Rel: b.Rel}
		if s, err := n.store.Get(b.From); err == nil && s != nil {
			e.Kind, e.Author = s.Record.Kind, s.Record.Author.String()
		}
		out = append(out, e)
	}
	return out, nil
}

// maxQRText bounds the text of a QR code. An invite code is some hundreds
// of bytes, over a thousand with many addresses and relays (see
// TestQRInvite); 2,048 bytes fit a version 40 code at level M (2,331).
const maxQRText = 2048

// qrSide is about the widest a QR code is drawn, in pixels, and
// qrMinModule the fewest pixels per module.
const (
	qrSide      = 360
	qrMinModule = 3
)

// apiQR draws text (an invite code) as a QR code, in PNG, for the
// dashboard: each module a whole number of pixels (as many as fit in
// about qrSide, at least qrMinModule), so that the page shows it at its
// own size and every module is as wide as the next.
func apiQR(_ http.ResponseWriter, r *http.Request) (any, error) {
	text := r.URL.Query().Get("text")
	if text == "" || len(text) > maxQRText {
		return nil, badf("text: give 1 to %d bytes to draw as a QR code (this is %d)", maxQRText, len(text))
	}
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, badf("text cannot be drawn as a QR code: %v", err)
	}
	modules := len(q.Bitmap()) // with the quiet zone
	png, err := q.PNG(-max(qrMinModule, qrSide/modules))
	if err != nil {
		return nil, err
	}
	return rawBody{ctype: "image/png", b: png}, nil
}
