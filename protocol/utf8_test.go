package protocol

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// TestParseBodyRejectsInvalidUTF8: a body that is not UTF-8 (an ERP that
// sends EUC-KR or CP949, a cut multi-byte sequence) is refused with the
// offset of the first bad byte, instead of being stored with its text
// replaced by U+FFFD.
func TestParseBodyRejectsInvalidUTF8(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		at   string
	}{
		{"CP949 한글", "{\"text\": \"\xc7\xd1\xb1\xdb\"}", "byte 10"},
		{"Latin-1", "{\"text\": \"Stra\xdfe\"}", "byte 14"},
		{"cut sequence", "{\"text\": \"\xed\x95\"}", "byte 10"},
		{"in a key", "{\"te\xffxt\": \"x\"}", "byte 4"},
		{"encoded surrogate", "{\"text\": \"\xed\xa0\x80\"}", "byte 10"},
	} {
		_, err := ParseBody([]byte(c.body))
		if !errors.Is(err, ErrBadJSON) || !strings.Contains(err.Error(), "UTF-8") || !strings.Contains(err.Error(), c.at) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// U+FFFD itself, sent as UTF-8, is text like any other.
	b, err := ParseBody([]byte("{\"text\": \"\xef\xbf\xbd 한글\"}"))
	if err != nil || b["text"] != "\ufffd 한글" {
		t.Fatalf("valid UTF-8: %v %v", b, err)
	}
}

// TestASCIIOrHangulIsNFC: what the fast path of checkText lets through,
// the NFC tables would too: every precomposed syllable, alone and next to
// every kind of neighbour it could compose with, and random mixes.
func TestASCIIOrHangulIsNFC(t *testing.T) {
	neighbours := []string{"", "a", "가", "각", "\u1100", "\u1161", "\u11a8", "\u0301", "힣"}
	for r := rune(0xAC00); r <= 0xD7A3; r++ {
		for _, n := range neighbours {
			for _, s := range []string{string(r) + n, n + string(r)} {
				if asciiOrHangul(s) && !norm.NFC.IsNormalString(s) {
					t.Fatalf("%+q passes the fast path but is not NFC", s)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		var b strings.Builder
		for range rng.IntN(12) {
			if rng.IntN(2) == 0 {
				b.WriteByte(byte(rng.IntN(128)))
			} else {
				b.WriteRune(rune(0xAC00 + rng.IntN(0xD7A4-0xAC00)))
			}
		}
		if s := b.String(); !asciiOrHangul(s) || !norm.NFC.IsNormalString(s) || !utf8.ValidString(s) {
			t.Fatalf("%+q: fast path %v, NFC %v", s, asciiOrHangul(s), norm.NFC.IsNormalString(s))
		}
	}
	for _, s := range []string{"\xff", "가\xed\xa0\x80", "e\u0301", "\u1100\u1161"} {
		if asciiOrHangul(s) {
			t.Fatalf("%+q passes the fast path", s)
		}
	}
}
