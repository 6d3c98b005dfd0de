package store

import "errors"

var (
	// ErrNotFound is returned when the database holds no record with the
	// requested CID.
	ErrNotFound = errors.New("store: not found")

	// ErrBadKey is returned by Open when the encryption key does not open the
	// database: a different key, no key for an encrypted database, a key for
	// an unencrypted one, or a key that is not 16, 24 or 32 bytes long.
	ErrBadKey = errors.New("store: wrong encryption key")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")

	// ErrInvalid is returned when a record handed to Put or PutBatch cannot be
	// indexed: nil, without CID or envelope, seq 0, no author, no channel
	// outside a channel genesis, or a part too long for the key layout.
	ErrInvalid = errors.New("store: invalid record")

	// ErrCorrupt is returned when bytes read from the database do not decode:
	// a damaged key or value, or an envelope that no longer matches its CID.
	ErrCorrupt = errors.New("store: corrupt data")

	// ErrBadCursor is returned when a listing cursor was not made by the same
	// listing.
	ErrBadCursor = errors.New("store: bad cursor")

	// ErrVersion is returned by Open when the database was written with a key
	// layout this version of the store does not know.
	ErrVersion = errors.New("store: unknown database layout version")
)
