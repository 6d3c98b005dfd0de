package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestStatusCommand: `sangsaeng status` and `status --json` against real
// daemons: the partner online, the channel with its members and own head,
// the reachability line saying in words the state --json gives.
func TestStatusCommand(t *testing.T) {
	bin := buildBinary(t)
	a, b := startDaemon(t, bin, "A"), startDaemon(t, bin, "B")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "ab")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "ab", b.id)
	b.mustRun("channel", "join", inv.Code)
	a.mustRun("publish", "ab", "note", tempFile(t, "n.json", `{"text": "상태 확인"}`))

	var st api.Status
	a.mustJSON(&st, "status")
	if !st.Healthy || st.ID != a.id || len(st.Channels) != 1 || st.Channels[0].ID != ch.ID || st.Channels[0].Members != 2 || st.Channels[0].OwnHead == 0 {
		t.Fatalf("status --json: %+v", st)
	}
	reach, ok := reachabilityText[st.Reachability.State]
	if !ok {
		t.Fatalf("status --json: reachability %q is none of public, relayed, private, unknown", st.Reachability.State)
	}
	out := a.mustRun("status")
	for _, want := range []string{a.id, "healthy (정상)", "CHANNEL", "ab", "store"} {
		if !strings.Contains(out, want) {
			t.Fatalf("sangsaeng status lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^reachability +` + regexp.QuoteMeta(reach) + `$`).MatchString(out) {
		t.Fatalf("sangsaeng status lacks the line reachability  %s:\n%s", reach, out)
	}
}
