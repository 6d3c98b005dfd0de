package store

import (
	"fmt"
	"log/slog"
	"time"
)

// Options configures Open. Start from DefaultOptions; a zero sizing field
// takes its value from DefaultOptions. Writes are always synced to disk
// before Put returns.
type Options struct {
	// Logger receives Badger's warnings and errors and the failures of the
	// value-log GC. Nil discards them.
	Logger *slog.Logger

	// EncryptionKey turns on encryption at rest (AES in Badger) when set. It
	// must be 16, 24 or 32 bytes (AES-128, -192, -256), and the same key must
	// be given every time the database is opened. Nil leaves the data in
	// plain. Encryption relies on the block and index caches, which is why
	// their sizes cannot be 0.
	EncryptionKey []byte

	// GCInterval is how often the value-log GC runs. Zero disables it.
	// Records are never overwritten or deleted, so the value log holds no
	// garbage but old versions of the node's settings; the GC rewrites
	// what is live in a file with synced writes and then deletes it.
	GCInterval time.Duration

	// MemTableSize is the size in bytes of each Badger memtable. The largest
	// transaction (and so a PutBatch chunk) is 15 % of it.
	MemTableSize int64

	// NumMemtables is how many memtables Badger keeps in memory, counting the
	// one being written, before writes wait for a flush to disk.
	NumMemtables int

	// BlockCacheSize is the size in bytes of Badger's cache of decrypted
	// table blocks. Without an EncryptionKey at most 4 MB of it is used:
	// tables are not compressed, and plain blocks are read from the
	// mapped files.
	BlockCacheSize int64

	// IndexCacheSize is the size in bytes of Badger's cache of table indexes
	// and bloom filters.
	IndexCacheSize int64

	// ValueLogFileSize is the size in bytes at which Badger starts a new
	// value-log file. The value-log GC rewrites whole files, so smaller files
	// give disk space back sooner.
	ValueLogFileSize int64
}

// DefaultOptions returns options sized for a small server: about 35 MB of
// Badger memory at most (two 8 MB memtables with their write headroom, an
// 8 MB index cache and a 4 MB block cache; 16 MB with encryption), 64 MB
// value-log files, value-log GC every 10 minutes, no encryption and no
// logger. Badger maps its files into memory, so the pages of records
// recently written or read count in the process's resident size, as
// reclaimable file pages.
func DefaultOptions() Options {
	return Options{
		GCInterval:       10 * time.Minute,
		MemTableSize:     8 << 20,
		NumMemtables:     2,
		BlockCacheSize:   16 << 20,
		IndexCacheSize:   8 << 20,
		ValueLogFileSize: 64 << 20,
	}
}

// withDefaults fills zero sizing fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.MemTableSize == 0 {
		o.MemTableSize = d.MemTableSize
	}
	if o.NumMemtables == 0 {
		o.NumMemtables = d.NumMemtables
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = d.BlockCacheSize
	}
	if o.IndexCacheSize == 0 {
		o.IndexCacheSize = d.IndexCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = d.ValueLogFileSize
	}
	return o
}

// Validate reports the first problem with o, after zero sizing fields have
// taken their defaults. A bad encryption key length is an ErrBadKey.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch len(o.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("%w: key is %d bytes, want 16, 24 or 32", ErrBadKey, len(o.EncryptionKey))
	}
	switch {
	case o.GCInterval < 0:
		return fmt.Errorf("store: negative GCInterval %v", o.GCInterval)
	case o.MemTableSize < 1<<20:
		return fmt.Errorf("store: MemTableSize %d below 1 MB", o.MemTableSize)
	case o.NumMemtables < 1:
		return fmt.Errorf("store: NumMemtables %d below 1", o.NumMemtables)
	case o.BlockCacheSize < 0:
		return fmt.Errorf("store: negative BlockCacheSize %d", o.BlockCacheSize)
	case o.IndexCacheSize < 0:
		return fmt.Errorf("store: negative IndexCacheSize %d", o.IndexCacheSize)
	case o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30:
		return fmt.Errorf("store: ValueLogFileSize %d outside [1 MB, 2 GB)", o.ValueLogFileSize)
	}
	return nil
}
