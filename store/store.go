package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// valueThreshold is the size from which Badger keeps a value in the value
// log rather than in the LSM tree. Index entries, heads and chain links
// stay in the tree, which keeps it small enough for the caches and fast to
// scan; the envelopes, and the node's larger settings, go to the value
// log.
const valueThreshold = 128

// plainBlockCache is the block cache of a store without encryption.
const plainBlockCache = 4 << 20

// Store is a node's record database. Its methods are safe for concurrent
// use.
type Store struct {
	db  *badger.DB
	log *slog.Logger

	mu     sync.Mutex
	idle   sync.Cond // signalled when active drops to 0
	active int       // calls in progress
	closed bool

	count atomic.Int64 // records under 'r'

	// heads mirrors the 'h' entries read or written so far, by key: Head
	// is asked for on every received record. Heads only grow, so the
	// mirror keeps the largest value it has seen.
	headsMu sync.Mutex
	heads   map[string]uint64

	dir string

	// arrival is the last arrival number handed out (see arrival.go);
	// arrivalMu orders numbering and commit.
	arrivalMu sync.Mutex
	arrival   uint64
	epoch     string // of the numbering (arrival.go)

	stopGC chan struct{}
	gcDone chan struct{}
	gcRuns atomic.Int64 // passes of the value-log GC, for tests
}

// Open opens the database in dir, creating it when it does not exist.
// A wrong encryption key fails with ErrBadKey.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("store open %s: %w", dir, err)
	}
	opts = opts.withDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	// Tables are not compressed: Badger reads their blocks straight from
	// the mapped files and needs little cache of decoded blocks, except
	// with encryption. A small one stays for stores written before,
	// whose tables are Snappy-compressed until compaction rewrites them.
	blockCache := opts.BlockCacheSize
	if len(opts.EncryptionKey) == 0 {
		blockCache = min(blockCache, plainBlockCache)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{logger.With("component", "badger")}).
		WithSyncWrites(true).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithBlockCacheSize(blockCache).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithValueThreshold(valueThreshold).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithDetectConflicts(true).
		WithNumVersionsToKeep(1)
	if len(opts.EncryptionKey) > 0 {
		bo = bo.WithEncryptionKey(append([]byte(nil), opts.EncryptionKey...))
	}

	db, err := badger.Open(bo)
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) || errors.Is(err, badger.ErrInvalidEncryptionKey) {
			err = fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		return nil, fmt.Errorf("store open %s: %w", dir, err)
	}
	s := &Store{db: db, log: logger, heads: map[string]uint64{}, dir: dir}
	s.idle.L = &s.mu
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store open %s: %w", dir, err)
	}
	if err := s.migrateLog(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store open %s: %w", dir, err)
	}
	// Records are written once and never deleted, so the value log holds
	// no garbage but the node's old settings; the GC gives that space back.
	if opts.GCInterval > 0 {
		s.stopGC = make(chan struct{})
		s.gcDone = make(chan struct{})
		go s.gcLoop(opts.GCInterval)
	}
	return s, nil
}

// init checks the layout version (writing it into a new database) and counts
// the records.
func (s *Store) init() error {
	want := byte(layoutInline)
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{pVersion})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte{pVersion}, []byte{want})
		}
		if err != nil {
			return err
		}
		err = item.Value(func(v []byte) error {
			if len(v) != 1 || (v[0] != layoutInline && v[0] != layoutLog) {
				return fmt.Errorf("%w: %x", ErrVersion, v)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	var n int64
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pRecord}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	s.count.Store(n)
	if err != nil {
		return err
	}
	return s.initArrivals()
}

// Close stops the value-log GC, waits for calls in progress and closes the
// database. Calls made after Close return ErrClosed; a second Close returns
// nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for s.active > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
	if s.stopGC != nil {
		close(s.stopGC)
		<-s.gcDone
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store close: %w", err)
	}
	return nil
}

// enter registers a call in progress; it fails once the store is closed.
// Every enter that succeeds is followed by leave.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.mu.Lock()
	s.active--
	if s.active == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// gcLoop runs the value-log GC every interval until Close.
func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			s.runGC()
		}
	}
}

// runGC rewrites value-log files until one pass finds nothing to reclaim.
func (s *Store) runGC() {
	for {
		select {
		case <-s.stopGC:
			return
		default:
		}
		err := s.db.RunValueLogGC(0.5)
		s.gcRuns.Add(1)
		switch {
		case err == nil:
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
		default:
			s.log.Warn("value-log GC failed", "err", err)
		}
		return
	}
}

// Count returns the number of records stored, including those kept only as
// fork evidence. It is kept in memory and costs nothing.
func (s *Store) Count() int64 {
	return s.count.Load()
}

// Size returns the bytes the database takes on disk (LSM tree and value
// log), as Badger last measured it; Badger refreshes the figure every
// minute.
func (s *Store) Size() int64 {
	if err := s.enter(); err != nil {
		return 0
	}
	defer s.leave()
	lsm, vlog := s.db.Size()
	return lsm + vlog
}

// badgerLogger routes Badger's warnings and errors to slog; its info and
// debug messages are dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, v ...any) {
	b.l.Log(context.Background(), slog.LevelError, strings.TrimSpace(fmt.Sprintf(f, v...)))
}

func (b badgerLogger) Warningf(f string, v ...any) {
	b.l.Log(context.Background(), slog.LevelWarn, strings.TrimSpace(fmt.Sprintf(f, v...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

var _ badger.Logger = badgerLogger{}
