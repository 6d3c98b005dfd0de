package store

import (
	"encoding/base64"
	"encoding/binary"

	"github.com/ipfs/go-cid"
)

// CursorAfter returns the listing cursor for the place of a record of time
// t (unix ms) and CID c in the newest-first order of ByChannel and ByKind:
// a page asked for with it starts with the first record after that place.
// The place is the same in every channel's and every kind's listing, so a
// caller can merge the listings of several channels and resume the merge
// where it stopped. It is the cursor those listings return after c.
func CursorAfter(t int64, c cid.Cid) string {
	b := binary.BigEndian.AppendUint64(nil, newest(t))
	return base64.RawURLEncoding.EncodeToString(append(b, c.Bytes()...))
}
