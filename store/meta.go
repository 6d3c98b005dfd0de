package store

import (
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Node state that is not records (the partner address book, settings the
// node keeps for itself) lives under its own prefix, in namespaces:
//
//	'm' namespace key → value
//
// with the namespace carrying its length byte.
const pMeta = 'm'

func metaKey(ns, key string) []byte {
	return newKey(pMeta, 1+len(ns)+len(key)).part([]byte(ns)).raw([]byte(key))
}

// PutMeta durably sets key in namespace ns to val.
func (s *Store) PutMeta(ns, key string, val []byte) error {
	if err := checkPart("namespace", []byte(ns)); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(ns, key), val) })
	if err != nil {
		return fmt.Errorf("store put %s/%s: %w", ns, key, err)
	}
	return nil
}

// GetMeta returns the value of key in ns, or ErrNotFound.
func (s *Store) GetMeta(ns, key string) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(metaKey(ns, key))
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store get %s/%s: %w", ns, key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store get %s/%s: %w", ns, key, err)
	}
	return out, nil
}

// DeleteMeta removes key from ns; removing a missing key is not an error.
func (s *Store) DeleteMeta(ns, key string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(metaKey(ns, key)) })
	if err != nil {
		return fmt.Errorf("store delete %s/%s: %w", ns, key, err)
	}
	return nil
}

// ListMeta returns every key and value in ns.
func (s *Store) ListMeta(ns string) (map[string][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	prefix := metaKey(ns, "")
	out := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefix):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store list %s: %w", ns, err)
	}
	return out, nil
}
