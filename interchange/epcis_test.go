package interchange

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/internal/gs1test"
)

// TestEPCISExamplesRead: every event of GS1's examples reads; each of
// GS1's invalid documents is refused with the rule it breaks.
func TestEPCISExamplesRead(t *testing.T) {
	dir := gs1test.Dir(t)
	examples, _ := filepath.Glob(filepath.Join(dir, "examples", "*.jsonld"))
	if len(examples) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range examples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		n, errs, err := ReadEPCIS(bytes.NewReader(data), filepath.Base(f), func(int, map[string]any) error { got++; return nil })
		if err != nil || len(errs) != 0 || got == 0 || got != n {
			t.Errorf("%s: %d of %d events, errors %v, %v", filepath.Base(f), got, n, errs, err)
		}
	}
	for f, want := range map[string]string{
		"bad_bizstep.json":  "bizStep",
		"bad_uom.json":      "uom",
		"bad_no_tz.json":    "eventTimeZoneOffset",
		"bad_noaction.json": "action",
	} {
		data, err := os.ReadFile(filepath.Join(dir, "invalid", f))
		if err != nil {
			t.Fatal(err)
		}
		_, errs, err := ReadEPCIS(bytes.NewReader(data), f, func(int, map[string]any) error {
			t.Errorf("%s: an invalid event was given out", f)
			return nil
		})
		if err != nil || len(errs) != 1 || !strings.Contains(errs[0].String(), want) || !strings.HasPrefix(errs[0].String(), f+" event 1 (ObjectEvent)") {
			t.Errorf("%s: errors %v, %v; want one naming %s", f, errs, err, want)
		}
	}
}

// TestEPCISDocumentProblems: what is not an EPCIS 2.0 document is refused
// as a whole, saying why.
func TestEPCISDocumentProblems(t *testing.T) {
	for doc, want := range map[string]string{
		`[]`:                             "not a JSON object",
		`{"type": "EPCISQueryDocument"}`: "want an EPCISDocument",
		`{"@context": [], "type": "EPCISDocument", "schemaVersion": "1.2"}`:                                                              "reads EPCIS 2.0",
		`{"@context": [], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-01-01T00:00:00Z"}`:                      "eventList is missing",
		`{"@context": [], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "x", "epcisBody": {"eventList": {}}}`:         "not an array",
		`{"@context": [], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "x", "epcisBody": {"eventList": [{"type": 1}`: "not JSON",
	} {
		_, _, err := ReadEPCIS(strings.NewReader(doc), "x.json", func(int, map[string]any) error { return nil })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}

// FuzzReadEPCIS: whatever a file holds, reading it as EPCIS never panics,
// and every event given out passed the kind's checks.
func FuzzReadEPCIS(f *testing.F) {
	f.Add([]byte(`{"@context": [], "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-01-01T00:00:00Z", "epcisBody": {"eventList": [{"type": "ObjectEvent", "eventTime": "2024-01-01T00:00:00Z", "eventTimeZoneOffset": "+09:00", "action": "OBSERVE", "bizStep": "shipping"}]}}`))
	f.Add([]byte(`{"epcisBody": {"eventList": [1, {}, []]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = ReadEPCIS(bytes.NewReader(data), "f", func(_ int, ev map[string]any) error {
			if ev["type"] == nil {
				t.Fatalf("an event without a type was given out: %v", ev)
			}
			return nil
		})
	})
}
