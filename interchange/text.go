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

// utf8Checker passes UTF-8 through, failing on bytes that are not.
type utf8Checker struct {
	r    io.Reader
	tail []byte // the start of a rune cut at the end of the last read
	off  int64
}

func (c *utf8Checker) Read(p []byte) (int, error) {
	if len(p) < 2*utf8.UTFMax {
		return 0, io.ErrShortBuffer
	}
	n := copy(p, c.tail)
	m, err := c.r.Read(p[n:])
	n += m
	c.tail = c.tail[:0]
	end := n
	if err == nil {
		// Keep back a rune cut at the end, for the next read.
		for i := 1; i < utf8.UTFMax && i <= end; i++ {
			if utf8.RuneStart(p[end-i]) {
				if !utf8.FullRune(p[end-i : end]) {
					c.tail = append(c.tail, p[end-i:end]...)
					end -= i
				}
				break
			}
		}
	}
	if !utf8.Valid(p[:end]) {
		for i := 0; i < end; {
			r, size := utf8.DecodeRune(p[i:end])
			if r == utf8.RuneError && size <= 1 {
				return 0, fmt.Errorf("byte %d is not UTF-8 (is the file CP949? pass --encoding cp949)", c.off+int64(i))
			}
			i += size
		}
	}
	c.off += int64(end)
	return end, err
}
