package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// getRecords asks GET /v1/records with query and returns the records and
// the next page's cursor.
func getRecords(t *testing.T, h *apiHarness, query url.Values) ([]api.Record, string, int) {
	t.Helper()
	req, err := http.NewRequest("GET", h.srv.URL+"/v1/records?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []api.Record
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
			t.Fatal(err)
		}
	}
	return recs, resp.Header.Get(api.NextCursorHeader), resp.StatusCode
}

// TestRecordsPaged: GET /v1/records answers one page at a time across
// channels, newest first; following the cursors gives every record once,
// in the store's order, with and without filters; a page of large records
// ends at the page's byte bound; a bad cursor is refused with what to do;
// and the Go client follows the pages up to its limit.
func TestRecordsPaged(t *testing.T) {
	n := startNodeWith(t, "A", slog.LevelWarn, nil)
	ctx := context.Background()
	one, err := n.CreateChannel(ctx, "one", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	two, err := n.CreateChannel(ctx, "two", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		ch := one
		if i%3 == 0 {
			ch = two
		}
		if _, err := n.Publish(ctx, ch, "note", map[string]any{"text": fmt.Sprint("note ", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// What every walk must give: the store's listings merged.
	want := func(keep func(*protocol.Signed) bool, chans ...cid.Cid) []string {
		var all []*protocol.Signed
		for _, ch := range chans {
			recs, _, err := n.store.ByChannel(ch, 1000, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range recs {
				if keep(s) {
					all = append(all, s)
				}
			}
		}
		slices.SortFunc(all, func(a, b *protocol.Signed) int {
			if pa, pb := (recordPlace{a.Record.Time, a.CID}), (recordPlace{b.Record.Time, b.CID}); pa.before(pb) {
				return -1
			} else if pb.before(pa) {
				return 1
			}
			return 0
		})
		var out []string
		for _, s := range all {
			out = append(out, s.CID.String())
		}
		return out
	}
	every := func(*protocol.Signed) bool { return true }
	h := newAPIHarness(t, n)
	walk := func(query url.Values, page int) []string {
		t.Helper()
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("limit", fmt.Sprint(page))
		var got []string
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("more than 100 pages")
			}
			recs, next, status := getRecords(t, h, q)
			if status != 200 {
				t.Fatalf("GET /v1/records?%s: %d", q.Encode(), status)
			}
			if len(recs) > page || (next != "" && len(recs) == 0) {
				t.Fatalf("page of %d records (limit %d), next %q", len(recs), page, next)
			}
			for _, r := range recs {
				got = append(got, r.CID)
			}
			if next == "" {
				return got
			}
			q.Set("cursor", next)
		}
	}
	for _, c := range []struct {
		what  string
		q     url.Values
		want  []string
		pages []int
	}{
		{"every channel", url.Values{}, want(every, one, two), []int{1, 7, 100}},
		{"one channel", url.Values{"channel": {"two"}}, want(every, two), []int{2, 9}},
		{"one kind", url.Values{"kind": {"channel-members"}}, want(func(s *protocol.Signed) bool { return s.Record.Kind == "channel-members" }, one, two), []int{1}},
		{"notes", url.Values{"kind": {"note"}}, want(func(s *protocol.Signed) bool { return s.Record.Kind == "note" }, one, two), []int{4}},
	} {
		for _, p := range c.pages {
			if got := walk(c.q, p); !slices.Equal(got, c.want) {
				t.Fatalf("%s, pages of %d: %d records\n%v\nwant %d\n%v", c.what, p, len(got), got, len(c.want), c.want)
			}
		}
	}
	if len(want(every, one, two)) < 27 {
		t.Fatalf("only %d records", len(want(every, one, two)))
	}

	// Large records: a page ends at its byte bound, not at its limit.
	big := strings.Repeat("가", 65000)
	for i := range 30 {
		if _, err := n.Publish(ctx, one, "note", map[string]any{"text": fmt.Sprint(i, big)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	recs, next, status := getRecords(t, h, url.Values{"limit": {"100"}})
	if status != 200 || next == "" || len(recs) >= 30 {
		t.Fatalf("a page of large records: %d, %d records, next %q", status, len(recs), next)
	}
	b, _ := json.Marshal(recs)
	if len(b) > maxRecordsPageBytes {
		t.Fatalf("a page of %d records holds %d bytes of JSON, over %d", len(recs), len(b), maxRecordsPageBytes)
	}
	t.Logf("a page of large records: %d records, %d KiB of JSON", len(recs), len(b)>>10)
	if got := walk(url.Values{}, 100); !slices.Equal(got, want(every, one, two)) {
		t.Fatalf("walk with large records: %d records, want %d", len(got), len(want(every, one, two)))
	}

	// A bad cursor.
	status, e, _ := h.do(t, "GET", "/v1/records?cursor=nope", nil)
	if status != 400 || e.Code != api.CodeBadRequest || !strings.Contains(e.Message, api.NextCursorHeader) {
		t.Fatalf("bad cursor: %d %+v", status, e)
	}

	// The Go client, as `sangsaeng records --limit` uses it.
	c := api.NewClient(strings.TrimPrefix(h.srv.URL, "http://"), h.token)
	all := want(every, one, two)
	for _, limit := range []int{0, 5, 45, 1000} {
		got, err := c.Records(ctx, api.Query{Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		k := min(limit, len(all))
		if limit == 0 {
			k = len(recs) // the daemon's first page
		}
		if len(got) != k {
			t.Fatalf("Records with limit %d: %d records, want %d", limit, len(got), k)
		}
		for i, r := range got {
			if r.CID != all[i] {
				t.Fatalf("Records with limit %d: record %d is %s, want %s", limit, i, r.CID, all[i])
			}
		}
	}
}
