package evidence

// CARv1, written and read here rather than with go-car: the format is a
// DAG-CBOR header and length-prefixed (CID, bytes) sections, a few dozen
// lines each way, and verify runs offline on files from anywhere, so every
// length is bounded and every block's hash is checked as it is read.
// go-car/v2 reads what this writes, and this reads what go-car/v2 writes
// (car_test.go).
//
//	file    = varint(len(header)) header section*
//	header  = DAG-CBOR {"roots": [CID], "version": 1}
//	section = varint(len(cid)+len(data)) cid data

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// Bounds on what a bundle may hold.
const (
	maxHeader  = 64 << 10
	maxSection = 1 << 20 // a record envelope is at most 256 KiB; the root lists its entries
	maxBlocks  = 1 << 20
	maxTotal   = 1 << 30 // what verify holds in memory
)

// carWriter writes a CARv1 stream.
type carWriter struct {
	w   io.Writer
	buf []byte
}

func newCARWriter(w io.Writer, root cid.Cid) (*carWriter, error) {
	h, err := protocol.EncodeValue(map[string]any{"roots": []any{root}, "version": int64(1)})
	if err != nil {
		return nil, err
	}
	cw := &carWriter{w: w}
	return cw, cw.write(nil, h)
}

func (cw *carWriter) write(c []byte, data []byte) error {
	cw.buf = binary.AppendUvarint(cw.buf[:0], uint64(len(c)+len(data)))
	cw.buf = append(cw.buf, c...)
	if _, err := cw.w.Write(cw.buf); err != nil {
		return err
	}
	_, err := cw.w.Write(data)
	return err
}

// put writes a block.
func (cw *carWriter) put(c cid.Cid, data []byte) error { return cw.write(c.Bytes(), data) }

// block is a block read from a bundle, with where it starts.
type block struct {
	cid    cid.Cid
	data   []byte
	offset int64
}

// carReader reads a CARv1 stream, checking as it goes.
type carReader struct {
	r     *bufio.Reader
	off   int64
	roots []cid.Cid
	n     int
	total int64
}

// ErrNotCAR is returned for a file that does not start like a CAR.
var ErrNotCAR = errors.New("not a CAR file")

func newCARReader(r io.Reader) (*carReader, error) {
	cr := &carReader{r: bufio.NewReaderSize(r, 64<<10)}
	l, err := cr.uvarint()
	if err != nil || l == 0 || l > maxHeader {
		return nil, fmt.Errorf("%w: no CAR header at the start", ErrNotCAR)
	}
	h := make([]byte, l)
	if _, err := io.ReadFull(cr.r, h); err != nil {
		return nil, fmt.Errorf("%w: the header is cut short", ErrNotCAR)
	}
	cr.off += int64(l)
	v, err := protocol.DecodeValue(h)
	if err != nil {
		return nil, fmt.Errorf("%w: the header is not DAG-CBOR: %v", ErrNotCAR, err)
	}
	m, _ := v.(map[string]any)
	if m["version"] != int64(1) {
		return nil, fmt.Errorf("the CAR header says version %v: this reads CARv1", m["version"])
	}
	roots, _ := m["roots"].([]any)
	for _, r := range roots {
		c, ok := r.(cid.Cid)
		if !ok {
			return nil, fmt.Errorf("the CAR header's roots hold %T, not CIDs", r)
		}
		cr.roots = append(cr.roots, c)
	}
	return cr, nil
}

func (cr *carReader) uvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := cr.r.ReadByte()
		if err != nil {
			return 0, err
		}
		cr.off++
		if b < 0x80 {
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, errors.New("a length that does not end")
}

// next returns the next block, its hash checked; io.EOF at the end.
func (cr *carReader) next() (block, error) {
	start := cr.off
	l, err := cr.uvarint()
	if errors.Is(err, io.EOF) && cr.off == start {
		return block{}, io.EOF
	}
	if err != nil {
		return block{}, fmt.Errorf("at byte %d: a section length is cut short or broken", start)
	}
	if l == 0 || l > maxSection {
		return block{}, fmt.Errorf("at byte %d: a section of %d bytes (at most %d)", start, l, maxSection)
	}
	if cr.n++; cr.n > maxBlocks {
		return block{}, fmt.Errorf("more than %d blocks", maxBlocks)
	}
	if cr.total += int64(l); cr.total > maxTotal {
		return block{}, fmt.Errorf("more than %d MiB of blocks", maxTotal>>20)
	}
	sec := make([]byte, l)
	if _, err := io.ReadFull(cr.r, sec); err != nil {
		return block{}, fmt.Errorf("at byte %d: the section is cut short", start)
	}
	cr.off += int64(l)
	n, c, err := cid.CidFromBytes(sec)
	if err != nil {
		return block{}, fmt.Errorf("at byte %d: the section does not start with a CID: %v", start, err)
	}
	data := sec[n:]
	if err := checkHash(c, data); err != nil {
		return block{}, fmt.Errorf("block %s at byte %d: %w", c, start, err)
	}
	return block{cid: c, data: data, offset: start}, nil
}

// checkHash checks that data hashes to c (sha2-256 only).
func checkHash(c cid.Cid, data []byte) error {
	dm, err := mh.Decode(c.Hash())
	if err != nil {
		return fmt.Errorf("the CID's hash does not decode: %v", err)
	}
	if dm.Code != mh.SHA2_256 {
		return fmt.Errorf("the CID's hash is %s: bundles use sha2-256", mh.Codes[dm.Code])
	}
	sum := sha256.Sum256(data)
	if !bytes.Equal(sum[:], dm.Digest) {
		return errors.New("its bytes do not hash to its CID: the bundle was changed after it was made")
	}
	return nil
}

// rawCID is the CID of bytes stored as they are (an envelope).
func rawCID(data []byte) cid.Cid {
	sum, _ := mh.Sum(data, mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, sum)
}
