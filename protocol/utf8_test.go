package protocol

import (
	"errors"
	"strings"
	"testing"
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
