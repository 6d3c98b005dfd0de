package main

import (
	"encoding/json"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestDiscloseDaemons: three daemons from the CLI. The tier 2 publishes an
// inspection in its channel with the tier 1; the tier 1 runs `sangsaeng
// disclose CID --channel OEM-CH --json`; on the OEM, `sangsaeng verify
// NEW-CID --json` is ok and names the tier 2 as the original author, and
// `sangsaeng trace NEW-CID --json` reaches the inspection.
func TestDiscloseDaemons(t *testing.T) {
	bin := buildBinary(t)
	oem, t1, t2 := startDaemon(t, bin, "OEM"), startDaemon(t, bin, "T1"), startDaemon(t, bin, "T2")
	var down, up api.Channel
	var inv api.Invite
	t1.mustJSON(&down, "channel", "create", "t1-t2")
	t1.mustJSON(&inv, "channel", "invite", "t1-t2", t2.id)
	t2.mustRun("channel", "join", inv.Code)
	t1.mustJSON(&up, "channel", "create", "oem-t1")
	t1.mustJSON(&inv, "channel", "invite", "oem-t1", oem.id)
	oem.mustRun("channel", "join", inv.Code)

	var insp api.Published
	t2.mustJSON(&insp, "publish", "t1-t2", "quality-inspection", tempFile(t, "qi.json", `{"docId": "QI-1", "docVersion": 1, "inspectedAt": "2026-11-25T09:00:00+09:00",
		"inspector": {"scheme": "vendor", "id": "T2"}, "inspectionType": "outgoing", "item": {"supplierPartNo": "FM-7"}, "lotId": "M-1", "sampleSize": 5, "result": "pass"}`))
	t1.waitRecord(insp.CID)

	var d api.Published
	t1.mustJSON(&d, "disclose", insp.CID, "--channel", "oem-t1")
	oem.waitRecord(d.CID)
	var v api.Verify
	oem.mustJSON(&v, "verify", d.CID)
	if !v.OK || v.Disclosed == nil || v.Disclosed.Author != t2.id || v.Disclosed.CID != insp.CID {
		t.Fatalf("verify on the OEM: %+v %+v", v, v.Disclosed)
	}
	out := oem.mustRun("trace", d.CID, "--json")
	var tr api.TraceNode
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatal(err)
	}
	if len(tr.Next) != 1 || tr.Next[0].CID != insp.CID || !tr.Next[0].Disclosed || tr.Next[0].Kind != "quality-inspection" {
		t.Fatalf("trace on the OEM: %s", out)
	}
}
