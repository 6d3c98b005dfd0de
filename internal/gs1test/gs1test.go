// Package gs1test finds GS1's EPCIS 2.0 reference files (schema, examples,
// invalid documents) for tests. They are GS1's files and stay outside the
// repository: in ../shared/epcis beside the clone, or where
// $SANGSAENG_EPCIS_DIR says.
package gs1test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the directory of GS1's files. When they are missing the test
// fails in CI ($CI or $SANGSAENG_CI set, as .ci/run does) and is skipped,
// saying where to put them, elsewhere.
func Dir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("SANGSAENG_EPCIS_DIR")
	if dir == "" {
		dir = besideModule()
		if _, err := os.Stat(dir); err != nil {
			// A clone made elsewhere than beside ../shared (CI's clean
			// clone, say) finds the workplace's copy.
			if _, err := os.Stat("/work/shared/epcis/examples"); err == nil {
				dir = "/work/shared/epcis"
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "examples")); err != nil {
		msg := fmt.Sprintf("GS1 EPCIS files not found (%v): put GS1's EPCIS 2.0 files in ../shared/epcis next to the repository, or set SANGSAENG_EPCIS_DIR to their directory", err)
		if os.Getenv("CI") != "" || os.Getenv("SANGSAENG_CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg + " (outside CI the test is skipped; in CI it fails)")
	}
	return dir
}

// besideModule is ../shared/epcis from the module's root, found from the
// test's working directory (its package's directory).
func besideModule() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "..", "shared", "epcis")
		}
		up := filepath.Dir(d)
		if up == d {
			return ""
		}
		d = up
	}
}
