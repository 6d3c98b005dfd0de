package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sangsaeng/sangsaeng/interchange"
)

// TestDemo runs the README's demo end to end: three real nodes, two
// channels, the week's records delivered, and nothing leaked to the OEM;
// the tier 1's EPCIS export of each channel passes GS1's EPCIS 2.0 JSON
// Schema (read from ../shared/epcis, as the other GS1 tests do).
func TestDemo(t *testing.T) {
	var ev evidence
	if err := run(false, &ev); err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("SANGSAENG_EPCIS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "epcis")
		if _, err := os.Stat(dir); err != nil {
			dir = "/work/shared/epcis"
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "JSON-Schema")); err != nil {
		msg := fmt.Sprintf("GS1 EPCIS schema not found (%v): put it in ../shared/epcis or set SANGSAENG_EPCIS_DIR", err)
		if os.Getenv("CI") != "" || os.Getenv("SANGSAENG_CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (skipped outside CI)")
	}
	schema, err := interchange.LoadGS1Schema(filepath.Join(dir, "JSON-Schema"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.epcis) != 2 {
		t.Fatalf("%d EPCIS exports, want one per channel", len(ev.epcis))
	}
	for name, doc := range ev.epcis {
		if err := schema.Validate(doc); err != nil {
			t.Errorf("the EPCIS export of %q does not pass GS1's schema: %v\n%s", name, err, doc)
		}
		n, errs, err := interchange.ReadEPCIS(bytes.NewReader(doc), name, func(int, map[string]any) error { return nil })
		if err != nil || len(errs) != 0 || n < 2 {
			t.Errorf("%q: %d events read back, %v, %v", name, n, errs, err)
		}
	}
}
