package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
	"github.com/sangsaeng/sangsaeng/store"
)

// Bounds of GET /v1/records. The answer is one page: at most limit records
// (defaultRecordsLimit unless asked, at most maxRecordsLimit) and, after
// the first record, at most maxRecordsPageBytes of JSON records; when more
// records follow, the api.NextCursorHeader header holds the cursor that
// asks for the next page. Records are read from the store recordsReadPage
// at a time per channel, and only the CIDs of those the page may use are
// kept, so that a page costs the node about maxRecordsPageBytes (twice,
// with the encoder's copy) whatever the store holds: the daemon's heap soft
// limit is 80 MiB (cmd/sangsaeng daemon.go), and 4 MiB is some thousands of
// ordinary records, or a dozen of the largest.
const (
	defaultRecordsLimit = 100
	maxRecordsLimit     = 10000
	maxRecordsPageBytes = 4 << 20
	// recordsReadPage records of at most protocol.MaxEnvelopeSize are
	// decoded at once to look for those the filters keep.
	recordsReadPage = 8
)

// recordSource is one newest-first listing of the store that a page of
// records merges: a channel's, or a kind's.
type recordSource struct {
	list   func(limit int, cursor string) ([]*protocol.Signed, string, error)
	keep   func(*protocol.Signed) bool
	cursor string // where the next read starts
	done   bool   // the listing has nothing more
	queue  []recordPlace
}

// recordPlace is a record's place in the newest-first order.
type recordPlace struct {
	t int64
	c cid.Cid
}

// before reports whether p comes before q: newer, or as new with the lower
// CID (the store's listing order).
func (p recordPlace) before(q recordPlace) bool {
	if p.t != q.t {
		return p.t > q.t
	}
	return bytes.Compare(p.c.Bytes(), q.c.Bytes()) < 0
}

// peek returns the source's next record place, reading the store as needed.
func (s *recordSource) peek(since int64) (recordPlace, bool, error) {
	for len(s.queue) == 0 && !s.done {
		page, next, err := s.list(recordsReadPage, s.cursor)
		if err != nil {
			return recordPlace{}, false, err
		}
		for _, r := range page {
			if r.Record.Time < since {
				next = "" // newest first: the rest are older
				break
			}
			if s.keep(r) {
				s.queue = append(s.queue, recordPlace{r.Record.Time, r.CID})
			}
		}
		s.cursor, s.done = next, next == ""
	}
	if len(s.queue) == 0 {
		return recordPlace{}, false, nil
	}
	return s.queue[0], true, nil
}

// apiRecords answers GET /v1/records: records newest first (by record time,
// ties in CID order), across the channels the node is in unless channel
// is given, filtered by kind, author and since, one page at a time (see
// maxRecordsPageBytes). The body is a JSON array of records; cursor, from
// the api.NextCursorHeader header of the page before, asks for the next.
func (n *Node) apiRecords(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	limit := defaultRecordsLimit
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxRecordsLimit {
			return nil, badf("limit %q must be a number from 1 to %d", s, maxRecordsLimit)
		}
		limit = v
	}
	var since int64
	if s := q.Get("since"); s != "" {
		t, err := protocol.ParseTime(s)
		if err != nil {
			if d, derr := time.ParseDuration(s); derr == nil {
				t, err = time.Now().Add(-d).UnixMilli(), nil
			}
		}
		if err != nil {
			return nil, badf("since %q must be an RFC 3339 time or a duration like 24h", s)
		}
		since = t
	}
	var author peer.ID
	if s := q.Get("author"); s != "" {
		p, err := parsePeer(s)
		if err != nil {
			return nil, err
		}
		author = p
	}
	kind := q.Get("kind")
	cursor := q.Get("cursor")
	keep := func(s *protocol.Signed) bool {
		return (kind == "" || s.Record.Kind == kind) && (author == "" || s.Record.Author == author)
	}
	var sources []*recordSource
	switch {
	case q.Get("channel") != "":
		ch, err := n.resolveChannel(q.Get("channel"))
		if err != nil {
			return nil, err
		}
		sources = append(sources, &recordSource{
			list: func(k int, c string) ([]*protocol.Signed, string, error) { return n.store.ByChannel(ch, k, c) },
			keep: keep,
		})
	case kind != "":
		// One listing, the kind's, of the channels the node is in.
		joined := map[cid.Cid]bool{}
		for _, ch := range n.gov.joined() {
			joined[ch] = true
		}
		sources = append(sources, &recordSource{
			list: func(k int, c string) ([]*protocol.Signed, string, error) { return n.store.ByKind(kind, k, c) },
			keep: func(s *protocol.Signed) bool { return joined[s.ChannelOf()] && keep(s) },
		})
	default:
		for _, ch := range n.gov.joined() {
			sources = append(sources, &recordSource{
				list: func(k int, c string) ([]*protocol.Signed, string, error) { return n.store.ByChannel(ch, k, c) },
				keep: keep,
			})
		}
	}
	for _, s := range sources {
		s.cursor = cursor
	}
	// The next place of every source, the first one of them, and whether
	// there is any.
	first := func() (*recordSource, bool, error) {
		var best *recordSource
		var at recordPlace
		for _, s := range sources {
			p, ok, err := s.peek(since)
			if err != nil {
				return nil, false, err
			}
			if ok && (best == nil || p.before(at)) {
				best, at = s, p
			}
		}
		return best, best != nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	out := make([]json.RawMessage, 0, min(limit, 256))
	size := 0
	var last recordPlace
	for len(out) < limit {
		s, ok, err := first()
		if err != nil {
			return nil, recordsError(err, cursor)
		}
		if !ok {
			return out, nil // the last page
		}
		p := s.queue[0]
		rec, err := n.store.Get(p.c)
		if err != nil {
			return nil, err
		}
		j, err := rec.JSON()
		if err != nil {
			return nil, err
		}
		buf.Reset()
		if err := enc.Encode(j); err != nil {
			return nil, err
		}
		if len(out) > 0 && size+buf.Len() > maxRecordsPageBytes {
			break
		}
		out = append(out, json.RawMessage(bytes.Clone(bytes.TrimSpace(buf.Bytes()))))
		size += buf.Len()
		s.queue = s.queue[1:]
		last = p
	}
	if _, more, err := first(); err != nil {
		return nil, recordsError(err, cursor)
	} else if more {
		w.Header().Set(api.NextCursorHeader, store.CursorAfter(last.t, last.c))
	}
	return out, nil
}

// recordsError says what to do about a bad cursor.
func recordsError(err error, cursor string) error {
	if errors.Is(err, store.ErrBadCursor) {
		return badf("cursor %q is not one this node gave out: pass the %s header of the page before, or no cursor for the first page", cursor, api.NextCursorHeader)
	}
	return err
}
