package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

func orderBody(no string) map[string]any {
	return map[string]any{
		"docId": no, "docVersion": int64(1), "issuedAt": "2026-11-23T09:00:00+09:00",
		"buyer":  map[string]any{"scheme": "vendor", "id": "OEM"},
		"seller": map[string]any{"scheme": "vendor", "id": "T1"},
		"lines": []any{map[string]any{
			"lineId": "1", "item": map[string]any{"buyerPartNo": "58101-3X000"},
			"quantity":          map[string]any{"value": "1200", "unit": "H87"},
			"requestedDelivery": map[string]any{"date": "2026-11-30"},
		}},
	}
}

// TestThreeCompanies runs an OEM, a tier-1 and a tier-2 node on loopback:
// two channels, sharing both ways, and the OEM never sees the tier-1–tier-2
// channel although it is connected to the tier-1.
func TestThreeCompanies(t *testing.T) {
	oem, t1, t2 := startNode(t, "OEM"), startNode(t, "Tier1"), startNode(t, "Tier2")
	up := link(t, oem, t1, "oem-t1")
	down := link(t, t1, t2, "t1-t2")
	ctx := context.Background()

	// OEM → tier-1.
	order, err := oem.Publish(ctx, up, "order", orderBody("PO-1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the order at the tier-1", 10*time.Second, func() bool { return has(t1, order.CID) })

	// Tier-1 → OEM: sharing goes both ways.
	resp, err := t1.Publish(ctx, up, "order-response", map[string]any{
		"docId": "RSP-1", "docVersion": int64(1), "issuedAt": "2026-11-23T10:00:00+09:00",
		"orderRef": map[string]any{"docId": "PO-1"}, "seller": map[string]any{"scheme": "vendor", "id": "T1"},
		"buyer": map[string]any{"scheme": "vendor", "id": "OEM"}, "responseCode": "accepted",
	}, []protocol.Link{{Rel: "responds-to", CID: order.CID}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the response at the OEM", 10*time.Second, func() bool { return has(oem, resp.CID) })

	// Tier-1 → tier-2, in the other channel, many records.
	var last *protocol.Signed
	for i := range 20 {
		if last, err = t1.Publish(ctx, down, "order", orderBody("PO-T2-"+string(rune('A'+i))), nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the tier-1's orders at the tier-2", 10*time.Second, func() bool { return has(t2, last.CID) })
	heads, err := t2.store.Heads(down)
	if err != nil {
		t.Fatal(err)
	}
	if heads[t1.ID()] != last.Record.Seq {
		t.Fatalf("tier-2 holds tier-1's chain to %d, want %d", heads[t1.ID()], last.Record.Seq)
	}
	// And back up, so the OEM's connection to the tier-1 carries traffic of
	// the channel it is not in.
	back, err := t2.Publish(ctx, down, "note", map[string]any{"text": "shipped lot L-77"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tier-2's note at the tier-1", 10*time.Second, func() bool { return has(t1, back.CID) })

	// The OEM is connected to the tier-1 but holds nothing of the channel.
	if !oem.connected(t1.ID()) {
		t.Fatal("the OEM should be connected to the tier-1")
	}
	// A record the OEM would receive was published after everything above;
	// once it is in, the tier-1–tier-2 traffic has had every chance to leak.
	probe, err := t1.Publish(ctx, up, "note", map[string]any{"text": "probe"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probe at the OEM", 10*time.Second, func() bool { return has(oem, probe.CID) })
	chans, err := oem.store.Channels()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chans {
		if c == down {
			recs, _, _ := oem.store.ByChannel(down, 100, "")
			t.Fatalf("the OEM holds %d records of a channel it is not in", len(recs))
		}
	}
	if _, ok := oem.gov.channel(down); ok {
		t.Fatal("the OEM knows the genesis of a channel it is not in")
	}

	// Each side knows the other's name from its profile.
	waitFor(t, "the tier-1's profile at the OEM", 10*time.Second, func() bool { return oem.gov.name(t1.ID()) == "Tier1" })
}

func TestPublishRefusesBadBody(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	ch := link(t, a, b, "ab")
	body := orderBody("PO-9")
	body["lines"].([]any)[0].(map[string]any)["quantity"] = map[string]any{"value": "12,00", "unit": "H87"}
	_, err := a.Publish(context.Background(), ch, "order", body, nil)
	if !errors.Is(err, protocol.ErrInvalidBody) {
		t.Fatalf("got %v, want a schema error", err)
	}
	if !strings.Contains(err.Error(), "lines/0/quantity/value") {
		t.Fatalf("the error does not name the field: %v", err)
	}
	if _, err := a.Publish(context.Background(), ch, "no-such-kind", map[string]any{}, nil); !errors.Is(err, protocol.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := a.Publish(context.Background(), protocol.Sum([]byte("x")), "note", map[string]any{"text": "x"}, nil); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("publish in a channel the node is not in: %v", err)
	}
}

// TestOutsiderRefused: a node that shares no channel cannot connect.
func TestOutsiderRefused(t *testing.T) {
	a, b := startNode(t, "A"), startNode(t, "B")
	link(t, a, b, "ab")
	out := startNode(t, "Outsider")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The outsider names a as its partner, so its own gater lets it dial.
	if err := out.AddPartner(ctx, a.ID(), a.host.Addrs(), ""); err != nil {
		t.Fatal(err)
	}
	err := out.host.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.host.Addrs()})
	if err == nil {
		// A connection may be torn down just after the handshake.
		waitFor(t, "the outsider to be disconnected", 5*time.Second, func() bool { return !a.connected(out.ID()) })
	}
	if a.connected(out.ID()) {
		t.Fatal("a member accepted a connection from an outsider")
	}
}

// sealAs signs a record as n's next record in ch without storing it.
func sealAs(t *testing.T, n *Node, ch cid.Cid, kind string, body map[string]any) *protocol.Signed {
	t.Helper()
	seq, prev, err := n.ownHead(ch)
	if err != nil {
		t.Fatal(err)
	}
	s, err := protocol.Seal(&protocol.Record{Channel: ch, Author: n.self, Seq: seq + 1, Prev: prev, Time: 1, Kind: kind, Body: body}, n.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDashboardAndAuth: / serves the dashboard without data; the API needs
// the token.
func TestDashboardAndAuth(t *testing.T) {
	n := startNode(t, "A")
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(page), "/dashboard.js") {
		t.Fatalf("dashboard: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = http.Get(srv.URL + "/v1/id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a token: %d", resp.StatusCode)
	}
}
