// Package interchange reads the files factories hold into record bodies:
// CSV (UTF-8 or CP949) and XLSX tables with Korean or English headers, one
// row per line item, grouped into documents by document number (the CSV
// contract of docs/design.md, "Interchange"). It is pure code over
// readers: the node signs and publishes what it returns.
package interchange
