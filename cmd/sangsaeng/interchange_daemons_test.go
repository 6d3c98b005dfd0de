package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/korean"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestImportExportDaemons: the commands a supplier runs, against real
// daemons: `import csv` of a CP949 order file that partner B receives,
// the same file again (nothing new), a file with a bad cell (exit 1, the
// row and column named, nothing published), then `export` as CSV, which
// imports back unchanged, and as EPCIS.
func TestImportExportDaemons(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "한빛-대성")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "한빛-대성", b.id)
	b.mustRun("channel", "join", inv.Code)

	dir := t.TempDir()
	writeCP949 := func(name string, rows ...string) string {
		t.Helper()
		data, err := korean.EUCKR.NewEncoder().Bytes([]byte(strings.Join(rows, "\r\n") + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	head := "발주번호,발주일자,공급사사업자번호,공급사,항번,고객품번,품명,수량,단위,납기일자"
	good := writeCP949("발주.csv", head,
		`PO-1,2026.11.20,312-86-00455,대성정밀,1,00123,브래킷,"1,200",EA,20261127`,
		`PO-1,2026.11.20,312-86-00455,대성정밀,2,86511-2S000,하우징,350,EA,2026-11-30`,
		`PO-2,2026.11.21,312-86-00455,대성정밀,1,00123,브래킷,40,개,2026-12-01`)
	var rep api.ImportReport
	a.mustJSON(&rep, "import", "csv", good, "--channel", "한빛-대성", "--kind", "order")
	if rep.Published != 2 || rep.Lines != 3 || rep.Encoding != "cp949" {
		t.Fatalf("import: %+v", rep)
	}
	out := a.mustRun("import", "csv", good, "--channel", "한빛-대성", "--kind", "order")
	if !strings.Contains(out, "0 published new, 0 as new versions; 2 unchanged") {
		t.Fatalf("second import:\n%s", out)
	}
	bad := writeCP949("발주-오류.csv", head, `PO-3,2026.11.22,312-86-00455,대성정밀,1,00125,볼트,12OO,EA,2026-12-02`)
	stdout, stderr, err := a.run("import", "csv", bad, "--channel", "한빛-대성", "--kind", "order")
	if err == nil || !strings.Contains(stdout, `발주-오류.csv row 2, column 수량: "12OO" is not a number`) || !strings.Contains(stderr, "nothing was published") {
		t.Fatalf("bad file: %v\n%s\n%s", err, stdout, stderr)
	}

	// B, the partner, holds both orders.
	var recs []api.Record
	waitUntil(t, "B to hold the orders", func() bool {
		b.mustJSON(&recs, "records", "--channel", "한빛-대성", "--kind", "order")
		return len(recs) == 2
	})

	csvOut := filepath.Join(dir, "export.csv")
	a.mustRun("export", "--channel", "한빛-대성", "--format", "csv", "--kind", "order", "-o", csvOut)
	data, err := os.ReadFile(csvOut)
	if err != nil || !strings.HasPrefix(string(data), "\ufeff발주번호") || !strings.Contains(string(data), "00123") {
		t.Fatalf("CSV export: %v\n%s", err, data)
	}
	a.mustJSON(&rep, "import", "csv", csvOut, "--channel", "한빛-대성", "--kind", "order")
	if rep.Unchanged != 2 || rep.Published != 0 || rep.Versions != 0 {
		t.Fatalf("the export imported again: %+v", rep)
	}
	epcis := a.mustRun("export", "--channel", "한빛-대성", "--format", "epcis", "--id-base", "https://id.hanbit.example.kr")
	if !strings.Contains(epcis, `"type":"EPCISDocument"`) {
		t.Fatalf("EPCIS export:\n%s", epcis)
	}

	// An evidence bundle of one order, checked by a machine with no node
	// at all; one flipped bit and it fails.
	car := filepath.Join(dir, "po-1.car")
	a.mustRun("export", "--channel", "한빛-대성", "--format", "car", "--cid", recs[0].CID, "--with-links", "-o", car)
	verify := func(path string) (string, string, error) {
		c := exec.Command(bin, "verify", path, "--home", filepath.Join(dir, "no-node-here"))
		var o, e strings.Builder
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		return o.String(), e.String(), err
	}
	if out, errOut, err := verify(car); err != nil || !strings.Contains(out, "checks out") {
		t.Fatalf("verify %s offline: %v\n%s%s", car, err, out, errOut)
	}
	data, err = os.ReadFile(car)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x04
	flipped := filepath.Join(dir, "flipped.car")
	if err := os.WriteFile(flipped, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := verify(flipped); err == nil || !strings.Contains(errOut, "does not verify") {
		t.Fatalf("a flipped bundle: %v\n%s", err, errOut)
	}
}

// waitUntil polls cond for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}
