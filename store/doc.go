// Package store persists a node's signed records, their indexes, heads,
// fork evidence and arrival order in a Badger database, whose synced
// writes make each record durable before Put returns (docs/design.md,
// "Store").
package store
