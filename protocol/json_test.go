package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

func TestParseBody(t *testing.T) {
	m, err := ParseBody([]byte(`{"name": "\u1100\u1161\u11a8 정밀", "n": 12, "f": 1.5, "e": 1e3, "neg": -7,
		"ok": true, "nil": null, "list": [1, "a", {"x": []}], "amount": "350.5"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "각 정밀", "n": int64(12), "f": 1.5, "e": 1000.0, "neg": int64(-7), "ok": true, "nil": nil,
		"list": []any{int64(1), "a", map[string]any{"x": []any{}}}, "amount": "350.5",
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v\nwant %#v", m, want)
	}
	out, err := BodyJSON(m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseBody(out)
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip through %s: %#v, %v", out, again, err)
	}
	if !bytes.Contains(out, []byte(`"e":1000.0`)) {
		t.Fatalf("a whole float must keep its decimal point: %s", out)
	}
}

func TestParseBodyRefuses(t *testing.T) {
	cases := map[string]string{
		"not an object":     `[1]`,
		"a string":          `"x"`,
		"empty":             ``,
		"duplicate key":     `{"a": 1, "a": 2}`,
		"duplicate in NFC":  "{\"\u1100\u1161\": 1, \"가\": 2}",
		"trailing data":     `{"a": 1} {"b": 2}`,
		"trailing garbage":  `{"a": 1} x`,
		"truncated":         `{"a": [1, 2`,
		"integer too large": `{"a": 9223372036854775808}`,
		"float too large":   `{"a": 1e400}`,
		"bad literal":       `{"a": tru}`,
		"too deep":          `{"a":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`,
		"single quotes":     `{'a': 1}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if m, err := ParseBody([]byte(in)); err == nil {
				t.Fatalf("parsed %q as %v", in, m)
			} else if !errors.Is(err, ErrBadJSON) {
				t.Fatalf("error %v is not ErrBadJSON", err)
			}
		})
	}
	big := `{"a": "` + strings.Repeat("x", MaxRecordSize) + `"}`
	if _, err := ParseBody([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
}

func TestJSONRecordRoundTrip(t *testing.T) {
	first := mustSeal(t, 12, testRecord(t, 12, 1, cid.Undef))
	second := mustSeal(t, 12, testRecord(t, 12, 2, first.CID))
	for _, s := range []*Signed{first, second} {
		j, err := s.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if j.CID != s.CID.String() || j.Seq != s.Record.Seq || j.Kind != "order" {
			t.Fatalf("JSON shape %+v", j)
		}
		if (j.Prev == nil) != (s.Record.Seq == 1) {
			t.Fatalf("prev %v at seq %d", j.Prev, s.Record.Seq)
		}
		r, err := j.Record()
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, s.Bytes) {
			t.Fatal("JSON round trip changed the record bytes")
		}
	}
	j, _ := first.JSON()
	bad := *j
	bad.Time = "2026-11-22T09:30:00.0001+09:00"
	if _, err := bad.Record(); err == nil {
		t.Fatal("sub-millisecond time accepted")
	}
	bad = *j
	bad.Channel = "not-a-cid"
	if _, err := bad.Record(); err == nil {
		t.Fatal("bad channel accepted")
	}
	bad = *j
	bad.Author = "12D3KooWnope"
	if _, err := bad.Record(); err == nil {
		t.Fatal("bad author accepted")
	}
}

func TestTime(t *testing.T) {
	ms, err := ParseTime("2026-11-22T09:30:00.250+09:00")
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatTime(ms); got != "2026-11-22T00:30:00.250Z" {
		t.Fatalf("FormatTime = %s", got)
	}
	if _, err := ParseTime("2026-11-22 09:30"); err == nil {
		t.Fatal("non-RFC 3339 time accepted")
	}
}
