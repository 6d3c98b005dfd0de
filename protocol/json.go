package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/text/unicode/norm"
)

// JSON is how records look to people and to the systems of a company: the
// local API, `--json` output and JSON Lines exports. Strings are normalised
// to NFC on the way in; integers stay integers, other numbers become 64-bit
// floats (business quantities are decimal strings, so no amount is rounded);
// CIDs are base32 strings and times RFC 3339.

// JSONLink is a Link in JSON.
type JSONLink struct {
	Rel string `json:"rel"`
	CID string `json:"cid"`
}

// JSONRecord is a record in JSON: the `record` shape of the local API.
type JSONRecord struct {
	CID     string          `json:"cid,omitempty"`
	Channel string          `json:"channel"`
	Author  string          `json:"author"`
	Seq     uint64          `json:"seq"`
	Prev    *string         `json:"prev"`
	Time    string          `json:"time"`
	Kind    string          `json:"kind"`
	Links   []JSONLink      `json:"links"`
	Body    json.RawMessage `json:"body"`
}

// timeLayout is RFC 3339 with milliseconds, the precision of Record.Time.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime renders record time (unix milliseconds) as RFC 3339 in UTC.
func FormatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(timeLayout)
}

// ParseTime reads an RFC 3339 time into unix milliseconds. A time finer than
// a millisecond is refused rather than rounded.
func ParseTime(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("time %q is not RFC 3339 (like 2026-11-22T09:30:00+09:00)", s)
	}
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		return 0, fmt.Errorf("time %q is finer than a millisecond", s)
	}
	return t.UnixMilli(), nil
}

// JSON returns the record in its JSON shape.
func (s *Signed) JSON() (*JSONRecord, error) {
	r := s.Record
	body, err := BodyJSON(r.Body)
	if err != nil {
		return nil, err
	}
	j := &JSONRecord{
		CID:     s.CID.String(),
		Channel: s.ChannelOf().String(),
		Author:  r.Author.String(),
		Seq:     r.Seq,
		Time:    FormatTime(r.Time),
		Kind:    r.Kind,
		Links:   make([]JSONLink, len(r.Links)),
		Body:    body,
	}
	if r.Prev.Defined() {
		p := r.Prev.String()
		j.Prev = &p
	}
	for i, l := range r.Links {
		j.Links[i] = JSONLink{Rel: l.Rel, CID: l.CID.String()}
	}
	return j, nil
}

// MarshalJSON renders the record in its JSON shape.
func (s *Signed) MarshalJSON() ([]byte, error) {
	j, err := s.JSON()
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// Record converts the JSON shape back to a record. The CID, when present, is
// not checked here: seal or encode the record and compare.
func (j *JSONRecord) Record() (*Record, error) {
	r := &Record{Seq: j.Seq, Kind: j.Kind}
	var err error
	if j.Kind != KindChannelGenesis {
		if r.Channel, err = cid.Decode(j.Channel); err != nil {
			return nil, fmt.Errorf("%w: channel %q: %v", ErrMalformed, truncate(j.Channel), err)
		}
	} else if j.Channel != "" && j.Channel != j.CID {
		return nil, fmt.Errorf("%w: a channel genesis founds its own channel; channel must be empty or its CID", ErrMalformed)
	}
	if r.Author, err = peer.Decode(j.Author); err != nil {
		return nil, fmt.Errorf("%w: author %q: %v", ErrMalformed, truncate(j.Author), err)
	}
	if j.Prev != nil {
		if r.Prev, err = cid.Decode(*j.Prev); err != nil {
			return nil, fmt.Errorf("%w: prev %q: %v", ErrMalformed, truncate(*j.Prev), err)
		}
	}
	if r.Time, err = ParseTime(j.Time); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for i, l := range j.Links {
		c, err := cid.Decode(l.CID)
		if err != nil {
			return nil, fmt.Errorf("%w: links/%d/cid %q: %v", ErrMalformed, i, truncate(l.CID), err)
		}
		r.Links = append(r.Links, Link{Rel: l.Rel, CID: c})
	}
	if r.Body, err = ParseBody(j.Body); err != nil {
		return nil, err
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return r, nil
}

// ErrBadJSON is returned for JSON that cannot become a record body.
var ErrBadJSON = errors.New("bad JSON")

// ParseBody reads a JSON object into a record body: strings in NFC, integer
// literals as int64, other numbers as float64. It refuses duplicate keys,
// nesting beyond MaxDepth, input beyond MaxRecordSize and trailing data.
func ParseBody(data []byte) (map[string]any, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("body is %d bytes: %w (the limit is %d bytes)", len(data), ErrTooLarge, MaxRecordSize)
	}
	// encoding/json would turn each invalid byte into U+FFFD without a word:
	// text sent in EUC-KR or CP949 would be stored destroyed.
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8 at byte %d (send JSON in UTF-8, not EUC-KR or CP949)", ErrBadJSON, firstInvalidUTF8(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := jsonParser{dec: dec}
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: a body must be a JSON object", ErrBadJSON)
	}
	m, err := p.object(1, "")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the body at byte %d", ErrBadJSON, dec.InputOffset())
	}
	return m, nil
}

// firstInvalidUTF8 returns the offset of the first byte of b that is not
// part of valid UTF-8.
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

type jsonParser struct{ dec *json.Decoder }

func (p *jsonParser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: unexpected end of input", ErrBadJSON)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
	}
	return tok, nil
}

func (p *jsonParser) value(tok json.Token, depth int, path string) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		if depth > MaxDepth {
			return nil, fmt.Errorf("%w: %s: nested deeper than %d", ErrBadJSON, pathOr(path), MaxDepth)
		}
		if t == '{' {
			return p.object(depth+1, path)
		}
		return p.array(depth+1, path)
	case string:
		return norm.NFC.String(t), nil
	case json.Number:
		return parseNumber(string(t), path)
	case bool:
		return t, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: %s: unexpected %v", ErrBadJSON, pathOr(path), tok)
}

func (p *jsonParser) object(depth int, path string) (map[string]any, error) {
	m := map[string]any{}
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s: object key expected", ErrBadJSON, pathOr(path))
		}
		k = norm.NFC.String(k)
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%w: %s/%s: key appears twice", ErrBadJSON, path, k)
		}
		if tok, err = p.token(); err != nil {
			return nil, err
		}
		if m[k], err = p.value(tok, depth, path+"/"+k); err != nil {
			return nil, err
		}
	}
	_, err := p.token() // '}'
	return m, err
}

func (p *jsonParser) array(depth int, path string) ([]any, error) {
	l := []any{}
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		v, err := p.value(tok, depth, fmt.Sprintf("%s/%d", path, len(l)))
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	_, err := p.token() // ']'
	return l, err
}

func parseNumber(s, path string) (any, error) {
	if !strings.ContainsAny(s, ".eE") {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: integer %s is out of range; send large or exact amounts as a decimal string", ErrBadJSON, pathOr(path), s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %s: number %s is out of range; send it as a decimal string", ErrBadJSON, pathOr(path), s)
	}
	return f, nil
}

// BodyJSON renders a body as JSON. Floats keep a decimal point so they read
// back as floats; CIDs and bytes, which JSON bodies cannot carry but DAG-CBOR
// ones can, take their DAG-JSON forms {"/": CID} and {"/": {"bytes": base64}}.
func BodyJSON(body map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, body, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(buf *bytes.Buffer, v any, depth int) error {
	if depth > MaxDepth+1 {
		return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, MaxDepth)
	}
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case int64:
		buf.WriteString(strconv.FormatInt(v, 10))
	case int:
		buf.WriteString(strconv.Itoa(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: NaN and infinities have no JSON form", ErrMalformed)
		}
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		buf.WriteString(s)
	case string:
		writeJSONString(buf, v)
	case []byte:
		buf.WriteString(`{"/":{"bytes":"`)
		buf.WriteString(base64.RawStdEncoding.EncodeToString(v))
		buf.WriteString(`"}}`)
	case cid.Cid:
		buf.WriteString(`{"/":"`)
		buf.WriteString(v.String())
		buf.WriteString(`"}`)
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case []string:
		l := make([]any, len(v))
		for i, s := range v {
			l[i] = s
		}
		return writeJSON(buf, l, depth)
	case []map[string]any:
		l := make([]any, len(v))
		for i, m := range v {
			l[i] = m
		}
		return writeJSON(buf, l, depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			if err := writeJSON(buf, v[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("%w: values of type %T have no JSON form", ErrMalformed, v)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // the encoder's newline
}
