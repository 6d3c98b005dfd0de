// Package store persists a node's signed records, their indexes, heads and
// fork evidence in a Badger database.
package store
