package protocol

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"golang.org/x/text/unicode/norm"
)

// This file is a strict DAG-CBOR codec for the record value model:
// nil, bool, int64, float64, string, []byte, cid.Cid, []any, map[string]any.
//
// Encoding is canonical (https://ipld.io/specs/codecs/dag-cbor/spec/): shortest
// integer and length forms, definite lengths only, map keys sorted by length
// then bytewise, links as tag 42 over a 0x00-prefixed binary CID, floats
// always as 64-bit and never NaN or infinite. Strings must be valid UTF-8 in
// Unicode NFC. Decoding accepts exactly these forms and nothing else, so for
// any input that decodes, encoding the result reproduces the input.

const (
	majUint   = 0
	majNegint = 1
	majBytes  = 2
	majText   = 3
	majArray  = 4
	majMap    = 5
	majTag    = 6
	majSimple = 7

	simpleFalse   = 20
	simpleTrue    = 21
	simpleNull    = 22
	simpleFloat64 = 27

	tagCID = 42
)

// appendHead appends a CBOR head (major type and argument) in its shortest form.
func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, majUint, uint64(v))
	}
	return appendHead(b, majNegint, uint64(-1-v))
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, majText, uint64(len(s))), s...)
}

func appendCID(b []byte, c cid.Cid) []byte {
	raw := c.Bytes()
	b = appendHead(b, majTag, tagCID)
	b = appendHead(b, majBytes, uint64(len(raw)+1))
	b = append(b, 0)
	return append(b, raw...)
}

// keyLess orders map keys as DAG-CBOR requires: shorter first, then bytewise.
func keyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func keyCompare(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// checkText reports whether s may appear in a record: valid UTF-8 in NFC.
func checkText(s string) error {
	if asciiOrHangul(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: string is not valid UTF-8", ErrMalformed)
	}
	if !norm.NFC.IsNormalString(s) {
		return fmt.Errorf("%w: string %q is not in Unicode NFC", ErrMalformed, truncate(s))
	}
	return nil
}

// asciiOrHangul reports whether s is ASCII and precomposed Hangul
// syllables (U+AC00 to U+D7A3) only: the text of most records, valid
// UTF-8 and in NFC by construction (such a syllable decomposes into
// conjoining jamo that compose back into it, and composes with none of
// its neighbours), so a quarter of a Korean record's decoding is not
// spent in the NFC tables to learn it.
func asciiOrHangul(s string) bool {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r < 0xAC00 || r > 0xD7A3 {
			return false
		}
		i += n
	}
	return true
}

func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	for i := 40; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// valueError is an encoding error at a path inside a value. The path is
// built on the way out of the recursion, so encoding pays nothing for it.
type valueError struct {
	path []string // innermost first
	err  error
}

func (e *valueError) Error() string {
	p := ""
	for i := len(e.path) - 1; i >= 0; i-- {
		p += "/" + e.path[i]
	}
	return pathOr(p) + ": " + e.err.Error()
}

func (e *valueError) Unwrap() error { return e.err }

// at adds a path element to an error from inside a value.
func at(err error, elem string) error {
	if ve, ok := err.(*valueError); ok {
		ve.path = append(ve.path, elem)
		return ve
	}
	return &valueError{path: []string{elem}, err: err}
}

// appendValue appends the canonical encoding of v.
func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, MaxDepth)
	}
	var err error
	switch v := v.(type) {
	case nil:
		return append(b, majSimple<<5|simpleNull), nil
	case bool:
		if v {
			return append(b, majSimple<<5|simpleTrue), nil
		}
		return append(b, majSimple<<5|simpleFalse), nil
	case int64:
		return appendInt(b, v), nil
	case int:
		return appendInt(b, int64(v)), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: NaN and infinities cannot be encoded", ErrMalformed)
		}
		b = append(b, majSimple<<5|simpleFloat64)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(v)), nil
	case string:
		if err := checkText(v); err != nil {
			return nil, err
		}
		return appendText(b, v), nil
	case []byte:
		return append(appendHead(b, majBytes, uint64(len(v))), v...), nil
	case cid.Cid:
		if !v.Defined() {
			return nil, fmt.Errorf("%w: undefined CID", ErrMalformed)
		}
		return appendCID(b, v), nil
	case []any:
		b = appendHead(b, majArray, uint64(len(v)))
		for i, e := range v {
			if b, err = appendValue(b, e, depth+1); err != nil {
				return nil, at(err, strconv.Itoa(i))
			}
		}
		return b, nil
	case []string:
		b = appendHead(b, majArray, uint64(len(v)))
		for i, e := range v {
			if err := checkText(e); err != nil {
				return nil, at(err, strconv.Itoa(i))
			}
			b = appendText(b, e)
		}
		return b, nil
	case []map[string]any:
		b = appendHead(b, majArray, uint64(len(v)))
		for i, e := range v {
			if b, err = appendValue(b, e, depth+1); err != nil {
				return nil, at(err, strconv.Itoa(i))
			}
		}
		return b, nil
	case map[string]any:
		var small [16]string
		keys := small[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, keyCompare)
		b = appendHead(b, majMap, uint64(len(keys)))
		for _, k := range keys {
			if err := checkText(k); err != nil {
				return nil, at(fmt.Errorf("key: %w", err), truncate(k))
			}
			b = appendText(b, k)
			if b, err = appendValue(b, v[k], depth+1); err != nil {
				return nil, at(err, k)
			}
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%w: values of type %T cannot be encoded", ErrMalformed, v)
	}
}

func pathOr(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// decoder reads canonical DAG-CBOR from b.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, d.i, fmt.Sprintf(format, args...))
}

// head reads a head whose argument must be in shortest form. For major type 7
// it returns the additional information as the argument and leaves any float
// payload unread.
func (d *decoder) head() (major byte, arg uint64, err error) {
	if d.i >= len(d.b) {
		return 0, 0, d.errf("unexpected end of input")
	}
	c := d.b[d.i]
	d.i++
	major, ai := c>>5, c&0x1f
	if major == majSimple {
		return major, uint64(ai), nil
	}
	switch {
	case ai < 24:
		return major, uint64(ai), nil
	case ai == 24:
		if d.i+1 > len(d.b) {
			return 0, 0, d.errf("truncated head")
		}
		arg = uint64(d.b[d.i])
		d.i++
		if arg < 24 {
			return 0, 0, d.errf("non-canonical integer: %d in a 1-byte argument", arg)
		}
	case ai == 25:
		if d.i+2 > len(d.b) {
			return 0, 0, d.errf("truncated head")
		}
		arg = uint64(binary.BigEndian.Uint16(d.b[d.i:]))
		d.i += 2
		if arg <= math.MaxUint8 {
			return 0, 0, d.errf("non-canonical integer: %d in a 2-byte argument", arg)
		}
	case ai == 26:
		if d.i+4 > len(d.b) {
			return 0, 0, d.errf("truncated head")
		}
		arg = uint64(binary.BigEndian.Uint32(d.b[d.i:]))
		d.i += 4
		if arg <= math.MaxUint16 {
			return 0, 0, d.errf("non-canonical integer: %d in a 4-byte argument", arg)
		}
	case ai == 27:
		if d.i+8 > len(d.b) {
			return 0, 0, d.errf("truncated head")
		}
		arg = binary.BigEndian.Uint64(d.b[d.i:])
		d.i += 8
		if arg <= math.MaxUint32 {
			return 0, 0, d.errf("non-canonical integer: %d in an 8-byte argument", arg)
		}
	case ai == 31:
		return 0, 0, d.errf("indefinite lengths are not allowed")
	default:
		return 0, 0, d.errf("reserved additional information %d", ai)
	}
	return major, arg, nil
}

// take returns the next n bytes without copying.
func (d *decoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.i) {
		return nil, d.errf("length %d runs past the end of input", n)
	}
	s := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return s, nil
}

func (d *decoder) text(n uint64) (string, error) {
	raw, err := d.take(n)
	if err != nil {
		return "", err
	}
	s := string(raw)
	if err := checkText(s); err != nil {
		return "", err
	}
	return s, nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, d.errf("nested deeper than %d", MaxDepth)
	}
	major, arg, err := d.head()
	if err != nil {
		return nil, err
	}
	switch major {
	case majUint:
		if arg > math.MaxInt64 {
			return nil, d.errf("integer %d does not fit in 64 signed bits", arg)
		}
		return int64(arg), nil
	case majNegint:
		if arg > math.MaxInt64 {
			return nil, d.errf("negative integer does not fit in 64 signed bits")
		}
		return -1 - int64(arg), nil
	case majBytes:
		raw, err := d.take(arg)
		if err != nil {
			return nil, err
		}
		return bytes.Clone(raw), nil
	case majText:
		return d.text(arg)
	case majArray:
		if arg > uint64(len(d.b)-d.i) {
			return nil, d.errf("list of %d items runs past the end of input", arg)
		}
		l := make([]any, arg)
		for i := range l {
			if l[i], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return l, nil
	case majMap:
		if arg > uint64(len(d.b)-d.i)/2 {
			return nil, d.errf("map of %d entries runs past the end of input", arg)
		}
		m := make(map[string]any, arg)
		last := ""
		for i := uint64(0); i < arg; i++ {
			km, kn, err := d.head()
			if err != nil {
				return nil, err
			}
			if km != majText {
				return nil, d.errf("map key of major type %d; keys must be strings", km)
			}
			k, err := d.text(kn)
			if err != nil {
				return nil, err
			}
			if i > 0 && !keyLess(last, k) {
				return nil, d.errf("map key %q out of canonical order or repeated", truncate(k))
			}
			last = k
			if m[k], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return m, nil
	case majTag:
		if arg != tagCID {
			return nil, d.errf("tag %d; only tag 42 (CID) is allowed", arg)
		}
		return d.link()
	default: // majSimple
		switch arg {
		case simpleFalse:
			return false, nil
		case simpleTrue:
			return true, nil
		case simpleNull:
			return nil, nil
		case simpleFloat64:
			raw, err := d.take(8)
			if err != nil {
				return nil, err
			}
			f := math.Float64frombits(binary.BigEndian.Uint64(raw))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, d.errf("NaN and infinities are not allowed")
			}
			return f, nil
		default:
			return nil, d.errf("simple value or float form %d is not allowed (only false, true, null and 64-bit floats)", arg)
		}
	}
}

// link reads the byte string of a tag-42 link.
func (d *decoder) link() (cid.Cid, error) {
	major, n, err := d.head()
	if err != nil {
		return cid.Undef, err
	}
	if major != majBytes {
		return cid.Undef, d.errf("tag 42 must wrap a byte string")
	}
	raw, err := d.take(n)
	if err != nil {
		return cid.Undef, err
	}
	if len(raw) < 2 || raw[0] != 0 {
		return cid.Undef, d.errf("link bytes must start with the 0x00 multibase prefix")
	}
	c, err := cid.Cast(raw[1:])
	if err != nil {
		return cid.Undef, d.errf("bad CID in link: %v", err)
	}
	if !bytes.Equal(c.Bytes(), raw[1:]) {
		return cid.Undef, d.errf("non-canonical CID in link")
	}
	return c, nil
}

// EncodeValue returns the canonical DAG-CBOR encoding of v, a value of the
// record value model.
func EncodeValue(v any) ([]byte, error) {
	return appendValue(nil, v, 0)
}

// DecodeValue decodes one canonical DAG-CBOR value that fills b exactly.
func DecodeValue(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(b) {
		return nil, d.errf("%d trailing bytes", len(b)-d.i)
	}
	return v, nil
}
