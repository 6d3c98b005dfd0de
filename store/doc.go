// Package store persists a node's signed records, their indexes, heads and
// fork evidence: the envelopes in an append-only record log (log.go), the
// rest in a Badger database. An encrypted store keeps the envelopes in
// Badger too, which encrypts them.
package store
