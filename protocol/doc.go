// Package protocol defines what sangsaeng nodes speak: records, their canonical
// DAG-CBOR encoding, content addresses, signed envelopes, kinds and their schemas.
package protocol
