package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// Canned answers of the fake daemon, in the node/api shapes.
const (
	peerA   = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	peerB   = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	chanID  = "bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmi7aniiyu"
	cidA    = "bafyreib4pff766vhpbxbhjbqqnsh5emeznvujayjj4z2iu533cprgbz23m"
	cidB    = "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae"
	testTok = "tok"
)

var (
	cannedID = api.ID{ID: peerA, Name: "Hanbit Motors", Addrs: []string{"/ip4/127.0.0.1/tcp/4801", "/ip4/203.0.113.7/tcp/4801"},
		Reachability: api.Reachability{
			State: "relayed", Public: []string{},
			Relays:     []api.RelayRef{{ID: peerB, Name: "Daeil Parts", Source: "config", Connected: true, Reserved: true, Expires: "2026-12-03T12:00:00Z"}},
			RelayAddrs: []string{"/ip4/198.51.100.10/tcp/4801/p2p/" + peerB + "/p2p-circuit/p2p/" + peerA},
		}}

	cannedStatus = api.Status{
		Healthy: true, ID: peerA, Name: "Hanbit Motors", Version: "0.1.0", UptimeSeconds: 90,
		Store: api.StoreStatus{Path: "/var/lib/sangsaeng/data", Records: 19},
		Peers: api.PeersStatus{Connected: []api.PeerRef{{ID: peerB, Name: "Daeil Parts"}}, Offline: []api.PeerRef{}},
		Reachability: api.Reachability{
			State: "private", Public: []string{},
			Relays: []api.RelayRef{{ID: peerB, Name: "Daeil Parts", Source: "invite", Error: "refused"}},
		},
		Channels: []api.ChannelLag{}, RecentErrors: []api.StatusError{},
	}

	cannedPeers = []api.Peer{
		{ID: peerB, Name: "Daeil Parts", Addrs: []string{"/ip4/10.0.0.2/tcp/4801"}, LatencyMs: 3.25, Channels: []string{chanID}},
	}

	cannedPartners = []api.Partner{
		{ID: peerB, Name: "Daeil Parts", Addrs: []string{"/ip4/10.0.0.2/tcp/4801", "/ip4/10.0.0.2/udp/4801/quic-v1"}},
	}

	cannedChannel = api.Channel{
		ID: chanID, Name: "hanbit-daeil",
		Admins:  []string{peerA},
		Members: []string{peerA, peerB},
		Heads:   map[string]uint64{peerA: 12, peerB: 7},
		Flagged: []string{peerB},
		Forks:   []api.Fork{{Author: peerB, Seq: 5, CIDs: []string{cidA, cidB}}},
	}

	cannedRecord = api.Record{
		CID: cidA, Channel: chanID, Author: peerA, Seq: 2, Prev: ptr(cidB),
		Time: "2026-11-22T00:30:00.000Z", Kind: "order",
		Links: []protocol.JSONLink{{Rel: "supersedes", CID: cidB}},
		Body:  json.RawMessage(`{"orderNumber":"PO-1","lines":[{"part":"<A&B>","quantity":"350.5"}]}`),
	}

	cannedSchema = json.RawMessage(`{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"order","type":"object"}`)

	cannedEnvelope = []byte("\x0a\x24envelope-bytes")
)

func ptr[T any](v T) *T { return &v }

// request is what the fake daemon was asked.
type request struct {
	Method, Path, Query string
	Body                []byte
	LastEventID         string
}

// fakeDaemon is an httptest server that answers the local API with canned
// values and records the requests it gets.
type fakeDaemon struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
	// fail, when set, answers every call with this error.
	fail *api.Error
	// verify is the answer of the verify endpoints.
	verify api.Verify
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	d := &fakeDaemon{verify: api.Verify{OK: true, CID: cidA, Author: peerA, Errors: []string{}}}
	mux := http.NewServeMux()
	ok := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, v) }
	}
	mux.HandleFunc("GET /v1/id", ok(cannedID))
	mux.HandleFunc("GET /v1/status", ok(cannedStatus))
	mux.HandleFunc("GET /v1/peers", ok(cannedPeers))
	mux.HandleFunc("GET /v1/partners", ok(cannedPartners))
	mux.HandleFunc("POST /v1/partners", ok(nil))
	mux.HandleFunc("DELETE /v1/partners/{id}", ok(nil))
	mux.HandleFunc("GET /v1/channels", ok([]api.Channel{cannedChannel}))
	mux.HandleFunc("GET /v1/channels/{ref}", ok(cannedChannel))
	mux.HandleFunc("POST /v1/channels", ok(cannedChannel))
	mux.HandleFunc("POST /v1/channels/{ref}/invite", ok(api.Invite{Code: "sangsaeng-invite:abc123"}))
	mux.HandleFunc("POST /v1/channels/{ref}/remove-member", ok(cannedChannel))
	mux.HandleFunc("POST /v1/channels/{ref}/records", ok(api.Published{CID: cidA, Seq: 13}))
	mux.HandleFunc("POST /v1/join", ok(cannedChannel))
	mux.HandleFunc("PUT /v1/profile", ok(nil))
	mux.HandleFunc("GET /v1/records", ok([]api.Record{cannedRecord}))
	mux.HandleFunc("GET /v1/records/{cid}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("raw") == "1" {
			w.Write(cannedEnvelope)
			return
		}
		writeJSON(w, cannedRecord)
	})
	mux.HandleFunc("POST /v1/verify", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.verify) })
	mux.HandleFunc("GET /v1/verify/{cid}", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.verify) })
	mux.HandleFunc("GET /v1/kinds", ok([]string{"note", "order"}))
	mux.HandleFunc("GET /v1/kinds/{kind}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("kind") != "order" {
			writeError(w, api.Errorf(api.CodeNotFound, http.StatusNotFound, "no kind %q", r.PathValue("kind")))
			return
		}
		w.Write(cannedSchema)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Last-Event-ID") == "8" {
			// The watch resumed after the last event it printed; this
			// daemon refuses, which ends the watch.
			writeError(w, api.Errorf(api.CodeBadRequest, 400, "no events after 8 here"))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i, rec := range []api.Record{cannedRecord, cannedRecord} {
			b, _ := json.Marshal(rec)
			fmt.Fprintf(w, "id: %d\nevent: record\ndata: %s\n\n", 7+i, b)
		}
		// Then the daemon stops: the stream ends.
	})
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.reqs = append(d.reqs, request{r.Method, r.URL.Path, r.URL.RawQuery, body, r.Header.Get("Last-Event-ID")})
		fail := d.fail
		d.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		switch {
		case r.Header.Get("Authorization") != "Bearer "+testTok:
			writeError(w, api.Errorf(api.CodeUnauthorized, http.StatusUnauthorized, "bad token"))
		case fail != nil:
			writeError(w, fail)
		default:
			mux.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(d.Close)
	return d
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if v == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}

// requests returns the requests made so far.
func (d *fakeDaemon) requests() []request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]request(nil), d.reqs...)
}

// last returns the last request; the test fails when there was none.
func (d *fakeDaemon) last(t *testing.T) request {
	t.Helper()
	rs := d.requests()
	if len(rs) == 0 {
		t.Fatal("no request reached the daemon")
	}
	return rs[len(rs)-1]
}

// cli runs commands in-process against a fake daemon.
type cli struct {
	t      *testing.T
	d      *fakeDaemon
	env    map[string]string
	stdin  string
	homes  []string // the home and addr each client was made for
	addrs  []string
	stdout strings.Builder
	stderr strings.Builder
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, d: newFakeDaemon(t), env: map[string]string{"SANGSAENG_HOME": "/nonexistent/home"}}
}

// run runs args and returns the exit status; stdout and stderr are kept.
func (c *cli) run(args ...string) int {
	c.stdout.Reset()
	c.stderr.Reset()
	env := &Env{
		Stdin:  strings.NewReader(c.stdin),
		Stdout: &c.stdout,
		Stderr: &c.stderr,
		Getenv: func(k string) string { return c.env[k] },
		NewClient: func(home, addr string) (*api.Client, error) {
			c.homes, c.addrs = append(c.homes, home), append(c.addrs, addr)
			return api.NewClient(c.d.URL, testTok), nil
		},
	}
	return run(context.Background(), env, args)
}

// mustRun runs args and fails the test unless they exit 0.
func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	if code := c.run(args...); code != 0 {
		c.t.Fatalf("sangsaeng %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, c.stderr.String())
	}
	return c.stdout.String()
}
