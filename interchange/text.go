package interchange

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/transform"
)

// Encodings a CSV file may be in.
const (
	EncodingAuto  = ""
	EncodingUTF8  = "utf-8"
	EncodingCP949 = "cp949"
)

// sniffBytes is how much of a file decides its encoding.
const sniffBytes = 64 << 10

// ParseEncoding reads an --encoding value.
func ParseEncoding(s string) (string, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "-")) {
	case "", "auto":
		return EncodingAuto, nil
	case "utf-8", "utf8":
		return EncodingUTF8, nil
	case "cp949", "euc-kr", "euckr", "ms949", "uhc", "windows-949":
		return EncodingCP949, nil
	}
	return "", fmt.Errorf("encoding %q: want utf-8 or cp949 (EUC-KR and its extension UHC, what Korean Excel writes)", s)
}

// decoder returns r as UTF-8 text and the encoding it was read in. With
// EncodingAuto, a UTF-8 BOM or a start that is valid UTF-8 means UTF-8;
// anything else is read as CP949 (golang.org/x/text's EUC-KR is the WHATWG
// one, the whole of Microsoft's code page 949). A BOM is dropped.
func decoder(r io.Reader, enc string) (io.Reader, string, error) {
	br := bufio.NewReaderSize(r, sniffBytes)
	head, err := br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, "", err
	}
	bom := bytes.HasPrefix(head, []byte("\xef\xbb\xbf"))
	if enc == EncodingAuto {
		enc = EncodingCP949
		if bom || validUTF8Prefix(head, len(head) < sniffBytes) {
			enc = EncodingUTF8
		}
	}
	if enc == EncodingUTF8 {
		if bom {
			_, _ = br.Discard(3)
		}
		return &utf8Checker{r: br}, enc, nil
	}
	return transform.NewReader(br, korean.EUCKR.NewDecoder()), enc, nil
}

// validUTF8Prefix reports whether b is UTF-8, allowing a rune cut at its
// end unless whole is set.
func validUTF8Prefix(b []byte, whole bool) bool {
	if !whole {
		for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
			if utf8.Valid(b) {
				return true
			}
			b = b[:len(b)-1]
		}
	}
	return utf8.Valid(b)
}

// utf8Checker passes UTF-8 through, failing on bytes that are not. It
// reads into a buffer of its own, so a reader asking for a few bytes at a
// time gets them.
type utf8Checker struct {
	r    io.Reader
	buf  []byte // checked bytes not yet given out: buf[next:ready]
	next int
	// ready bytes of buf are checked; bytes after them (at most a rune
	// cut at the end of a read) wait for the next read.
	ready int
	end   int
	err   error
	off   int64
}

func (c *utf8Checker) Read(p []byte) (int, error) {
	for c.next == c.ready {
		if c.err != nil {
			return 0, c.err
		}
		if c.buf == nil {
			c.buf = make([]byte, 32<<10)
		}
		// Keep the cut rune, read more after it.
		copy(c.buf, c.buf[c.ready:c.end])
		c.end -= c.ready
		c.next, c.ready = 0, 0
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		c.err = err
		ready := c.end
		if err == nil {
			for i := 1; i < utf8.UTFMax && i <= ready; i++ {
				if utf8.RuneStart(c.buf[ready-i]) {
					if !utf8.FullRune(c.buf[ready-i : ready]) {
						ready -= i
					}
					break
				}
			}
		}
		if b := c.buf[:ready]; !utf8.Valid(b) {
			for i := 0; i < len(b); {
				r, size := utf8.DecodeRune(b[i:])
				if r == utf8.RuneError && size <= 1 {
					c.err = fmt.Errorf("byte %d is not UTF-8 (is the file CP949? pass --encoding cp949)", c.off+int64(i))
					return 0, c.err
				}
				i += size
			}
		}
		c.ready = ready
		c.off += int64(ready)
	}
	n := copy(p, c.buf[c.next:c.ready])
	c.next += n
	return n, nil
}
