// Package api holds the local API's request and response types and the Go
// client that the CLI, and a company's ERP or MES glue, use to drive a node.
package api
