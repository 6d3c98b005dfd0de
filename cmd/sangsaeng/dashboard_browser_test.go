package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// TestDashboardBrowser drives the dashboard of a real daemon in Debian's
// chromium, headless: sign in with the one-time link `sangsaeng dashboard`
// prints, watch a record a partner publishes appear live, invite a third
// company that joins with the code shown (and see a code too long for a
// QR code refused in the view), switch to English and reload,
// see each order line's lifecycle (late lines first), dates in each
// locale, download a record's envelope and CAR, import a CSV with one bad
// row and see the error, fit every view on a phone, see one partner of two
// offline, remove a member, and check that a request without the session,
// or with the session from a foreign Origin, is refused. It writes a
// screenshot of each view, in Korean and English, to
// $SANGSAENG_SCREENSHOTS (default: sangsaeng-dashboard-screenshots in the
// temp dir), and names the folder in its log.
func TestDashboardBrowser(t *testing.T) {
	bin := buildBinary(t) // skips with -short
	chrome := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chrome = p
			break
		}
	}
	if chrome == "" {
		skipOrFail(t, "no chromium: install Debian's chromium (and fonts-noto-cjk for Korean text); .ci/run does")
	}
	shots := os.Getenv("SANGSAENG_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "sangsaeng-dashboard-screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	a, b := startDaemon(t, bin, "한빛모터스"), startDaemon(t, bin, "대성정밀")
	var ch api.Channel
	a.mustJSON(&ch, "channel", "create", "한빛-대성")
	var inv api.Invite
	a.mustJSON(&inv, "channel", "invite", "한빛-대성", b.id)
	b.mustRun("channel", "join", inv.Code)
	var order api.Published
	a.mustJSON(&order, "publish", "한빛-대성", "order", tempFile(t, "po.json", orderJSON))
	b.waitRecord(order.CID)
	// An order of two lines, only the second of which is late: the
	// seller confirms both (the second with less, for a date now past),
	// ships part of the first, which the buyer receives, rejecting some,
	// and inspects its lot.
	day := func(d int) string { return time.Now().AddDate(0, 0, d).Format(time.DateOnly) }
	at := time.Now().Add(-72 * time.Hour).Format(time.RFC3339)
	var po2 api.Published
	a.mustJSON(&po2, "publish", "한빛-대성", "order", tempFile(t, "po2.json", `{"docId": "PO-HB-2612-002", "docVersion": 1, "issuedAt": "`+at+`",
	  "buyer": {"scheme": "kr-brn", "id": "1388101230", "name": "한빛모터스"}, "seller": {"scheme": "kr-brn", "id": "3128600455", "name": "대성정밀"},
	  "lines": [{"lineId": "10", "item": {"buyerPartNo": "58101-3X100"}, "quantity": {"value": "500", "unit": "H87"}, "requestedDelivery": {"date": "`+day(30)+`"}},
	            {"lineId": "20", "item": {"buyerPartNo": "58101-3X200"}, "quantity": {"value": "300", "unit": "H87"}, "requestedDelivery": {"date": "`+day(-3)+`"}}]}`))
	party := `"seller": {"scheme": "kr-brn", "id": "3128600455", "name": "대성정밀"}, "buyer": {"scheme": "kr-brn", "id": "1388101230", "name": "한빛모터스"}`
	var lifecycle []api.Published
	for _, p := range []struct {
		d          *daemon
		kind, body string
	}{
		{b, "order-response", `{"docId": "OR-DS-002", "docVersion": 1, "issuedAt": "` + at + `", "orderRef": {"docId": "PO-HB-2612-002"}, ` + party + `, "responseCode": "changed", "lines": [
		  {"lineId": "10", "lineStatus": "accepted", "confirmedDeliveryDate": "` + day(20) + `"},
		  {"lineId": "20", "lineStatus": "changed", "confirmedQuantity": {"value": "250", "unit": "H87"}, "confirmedDeliveryDate": "` + day(-2) + `"}]}`},
		{b, "despatch-advice", `{"docId": "DN-DS-002", "docVersion": 1, "issuedAt": "` + at + `", "despatchedAt": "` + at + `", ` + party + `, "lines": [
		  {"lineId": "1", "orderRef": {"docId": "PO-HB-2612-002", "lineId": "10"}, "item": {"buyerPartNo": "58101-3X100"}, "quantity": {"value": "100", "unit": "H87"}, "lotIds": ["L-77"]}]}`},
		{b, "quality-inspection", `{"docId": "QI-DS-077", "docVersion": 1, "inspectedAt": "` + at + `", "inspector": {"scheme": "kr-brn", "id": "3128600455", "name": "대성정밀"},
		  "inspectionType": "outgoing", "item": {"buyerPartNo": "58101-3X100"}, "lotId": "L-77", "sampleSize": 5, "result": "pass"}`},
		{a, "receipt", `{"docId": "GR-HB-002", "docVersion": 1, "issuedAt": "` + at + `", "receivedAt": "` + at + `", ` + party + `, "despatchRef": {"docId": "DN-DS-002"}, "lines": [
		  {"lineId": "1", "item": {"buyerPartNo": "58101-3X100"}, "quantityReceived": {"value": "100", "unit": "H87"}, "quantityAccepted": {"value": "95", "unit": "H87"}, "quantityRejected": {"value": "5", "unit": "H87"}, "rejectReason": "burr"}]}`},
	} {
		var pub api.Published
		p.d.mustJSON(&pub, "publish", "한빛-대성", p.kind, tempFile(t, p.kind+".json", p.body))
		lifecycle = append(lifecycle, pub)
	}
	for _, p := range lifecycle {
		a.waitRecord(p.CID)
	}

	// A third company, invited from the page: the channel then has two
	// partners, one of which goes offline below.
	c := startDaemon(t, bin, "세진소재")
	// A fourth, not started: only its peer ID, for the requests below
	// that invite it.
	d := &daemon{t: t, bin: bin, home: t.TempDir(), name: "D"}
	out := d.mustRun("init", "--name", "D", "--api", "127.0.0.1:0")
	var did string
	if _, err := fmt.Sscanf(out, "peer ID %s", &did); err != nil {
		t.Fatalf("init printed %q: %v", out, err)
	}

	var link struct{ URL string }
	a.mustJSON(&link, "dashboard", "--no-open")
	if !strings.Contains(link.URL, "/login?code=") {
		t.Fatalf("dashboard link: %q", link.URL)
	}
	base := link.URL[:strings.Index(link.URL, "/login")]

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1366, 768), chromedp.Flag("lang", "ko-KR"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// Start the browser on ctx itself: the steps' own deadlines below
	// must not be the browser's.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}
	// The page asks before it removes a member or publishes (confirm):
	// accept, and keep what it asked.
	dialogs := make(chan string, 8)
	go func() {
		for ev, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}); err != nil {
				return
			}
			select {
			case dialogs <- ev.Message:
			default:
			}
		}
	}()
	shot := func(name string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v\npage:\n%s\n%s", what, err, body, a.log)
		}
	}
	textOf := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
	// drawnIn waits until the view has been drawn again in a language: a
	// switch redraws it after a request, and until then the old view's
	// elements are still there to be found (and filled, and lost).
	drawnIn := func(lang string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitReady(chromedp.CSS(`#view[data-lang="` + lang + `"]`))
	}
	// overviewUntil draws the overview again until its channels say what
	// ok looks for.
	overviewUntil := func(what string, ok func(channels string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			run(what, chromedp.Navigate(base+"/#/orders"), visible("#orders"), chromedp.Navigate(base+"/#/"), visible("#channels"))
			if ok(textOf("#channels")) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the overview says\n%s", what, textOf("#view"))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	upload := func(sel, file string) chromedp.Action[chromedp.Void] {
		return chromedp.SetUploadFiles(chromedp.CSS(sel), []string{file})
	}

	// Sign in: the link sets the session and lands on the overview.
	run("sign in", chromedp.Navigate(link.URL), visible("#channels"))
	if got := textOf("#view"); !strings.Contains(got, "한빛모터스") || !strings.Contains(got, "한빛-대성") || !strings.Contains(got, "동기화") {
		t.Fatalf("overview in Korean lacks the node or its channel:\n%s", got)
	}
	shot("overview-ko")

	// The link works once.
	run("reuse the link", chromedp.Navigate(link.URL))
	again := textOf("body")
	if !strings.Contains(again, "already") && !strings.Contains(again, "이미") {
		t.Fatalf("a used sign-in link still works:\n%s", again)
	}

	// A channel; a record the partner publishes appears live.
	run("channel view", chromedp.Navigate(base+"/#/channel/"+ch.ID), visible("#stream"),
		visible("#stream-state.ok"))
	var live api.Published
	b.mustJSON(&live, "publish", "한빛-대성", "note", tempFile(t, "live.json", `{"text": "대성정밀: 11월 27일 출하 준비 완료"}`))
	run("the partner's record, live", visible(fmt.Sprintf(`#stream tr[data-cid="%s"]`, live.CID)))
	if got := textOf("#stream"); !strings.Contains(got, "출하 준비 완료") {
		t.Fatalf("the live row lacks the record's text:\n%s", got)
	}
	// Invite a partner: the code as text and as a QR code.
	run("invite", chromedp.SendKeys(chromedp.CSS("#invite-peer"), c.id), click("#invite-do"),
		visible("#invite-code"), visible("img.qr"))
	code, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#invite-code")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(code, "ssinv1.") {
		t.Fatalf("invite code shown: %q", code)
	}
	c.mustRun("channel", "join", code)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("img.qr").complete && document.querySelector("img.qr").naturalWidth > 0`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the invite's QR code did not load: %v", err)
	}
	// At its own size, so that every module is as many pixels as the next.
	if sizes, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`(i => [i.naturalWidth, i.width])(document.querySelector("img.qr"))`)); err != nil || len(sizes) != 2 || sizes[0] != sizes[1] {
		t.Fatalf("the QR code is shown at %v px (its own size, then the page's): %v", sizes, err)
	}
	shot("channel-ko")
	// A code over the QR code's limit (the page's invite answered by a
	// stand-in, the QR code by the node): the node's reason in the
	// image's place, the code still there to copy.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.realFetch = window.fetch;
		window.fetch = (u, o) => String(u).endsWith("/invite") ? Promise.resolve(new Response(JSON.stringify({code: "ssinv1." + "A".repeat(3000)}),
			{status: 200, headers: {"Content-Type": "application/json"}})) : window.realFetch(u, o); true`)); err != nil {
		t.Fatal(err)
	}
	run("an invite code too long for a QR code", click("#invite-do"), visible("#qr-error"))
	if got := textOf("#invite-out"); !strings.Contains(got, "QR 코드를 만들 수 없습니다") || !strings.Contains(got, "give 1 to 2048 bytes") {
		t.Fatalf("a code over the QR limit shows:\n%s", got)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.fetch = window.realFetch; document.querySelectorAll("#invite-out img").length`)); err != nil || n != 0 {
		t.Fatalf("a code over the QR limit shows %d images: %v", n, err)
	}
	shot("channel-ko-qr-refused")

	// English, remembered.
	run("switch to English", click("#lang"), drawnIn("en"), visible("#stream"))
	if got := textOf("nav"); !strings.Contains(got, "Overview") || !strings.Contains(got, "Import") {
		t.Fatalf("the menu is not in English: %q", got)
	}
	shot("channel-en")
	// A reload starts the page anew (a new document, its script run
	// again): what it remembers comes from localStorage alone.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	run("reload", chromedp.Reload(), drawnIn("en"), visible("#stream"))
	if fresh, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === undefined`)); err != nil || !fresh {
		t.Fatalf("the page was not reloaded: %v", err)
	}
	if got := textOf("nav"); !strings.Contains(got, "Overview") || !strings.Contains(got, "Import") {
		t.Fatalf("after a reload the menu is not in English: %q", got)
	}
	if got := textOf("#view h1"); !strings.HasPrefix(got, "Channel: ") {
		t.Fatalf("after a reload the channel view is not in English: %q", got)
	}
	// Both partners online and caught up: in sync.
	overviewUntil("overview in English, in sync", func(got string) bool { return strings.Contains(got, "in sync") })
	if got := textOf("#view"); !strings.Contains(got, "This node") {
		t.Fatalf("the overview is not in English:\n%s", got)
	}
	shot("overview-en")

	// A record: fields, its check, links; then orders.
	run("record view", chromedp.Navigate(base+"/#/record/"+order.CID), visible("#check .ok"))
	if got := textOf("#view"); !strings.Contains(got, "PO-HB-2611-001") || !strings.Contains(got, "signature, CID, schema") {
		t.Fatalf("record view:\n%s", got)
	}
	// Dates in the chosen locale: the record's time, and a time in its
	// body in the offset the document gives.
	issued := `dl.fields time[datetime="2026-11-23T09:00:00+09:00"]`
	enTime, enIssued := textOf("#rec-time"), textOf(issued)
	if enIssued != "23 Nov 2026, 09:00:00" || !strings.Contains(enTime, time.Now().Format("2006")) || strings.Contains(enTime, "T") {
		t.Fatalf("record view in English: time %q, issuedAt %q", enTime, enIssued)
	}
	shot("record-en")
	// Its two downloads, with the page's session.
	type download struct {
		Status int
		Type   string
		Bytes  int
	}
	dls, err := chromedp.Run(ctx, chromedp.Evaluate[[]download](`Promise.all(["#dl-env", "#dl-car"].map((s) => fetch(document.querySelector(s).href)
		.then(async (r) => ({Status: r.status, Type: r.headers.get("content-type"), Bytes: (await r.arrayBuffer()).byteLength}))))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].Status != http.StatusOK || dls[0].Type != "application/octet-stream" || dls[0].Bytes == 0 ||
		dls[1].Status != http.StatusOK || dls[1].Type != "application/vnd.ipld.car" || dls[1].Bytes <= dls[0].Bytes {
		t.Fatalf("the record's downloads (envelope, CAR): %+v", dls)
	}
	run("orders", chromedp.Navigate(base+"/#/orders"), visible("#orders"))
	if got := textOf("#orders"); !strings.Contains(got, "PO-HB-2611-001") || !strings.Contains(got, "2,400") {
		t.Fatalf("orders view:\n%s", got)
	}
	// Each line with its own lifecycle; late lines first.
	type orderRow struct {
		Order, Line string
		Late        bool
		Cells       []string
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]orderRow](`[...document.querySelectorAll("#orders tbody tr")].map((tr) =>
		({Order: tr.dataset.order, Line: tr.dataset.line, Late: tr.classList.contains("late"), Cells: [...tr.cells].map((c) => c.innerText.trim())}))`))
	if err != nil {
		t.Fatal(err)
	}
	at10, at20 := -1, -1
	for i, r := range rows {
		if i > 0 && r.Late && !rows[i-1].Late {
			t.Errorf("orders: a late line (%s/%s) after one that is not", r.Order, r.Line)
		}
		if r.Order == "PO-HB-2612-002" && r.Line == "10" {
			at10 = i
		}
		if r.Order == "PO-HB-2612-002" && r.Line == "20" {
			at20 = i
		}
	}
	if at10 < 0 || at20 < 0 || at20 > at10 || !rows[at20].Late || rows[at10].Late {
		t.Fatalf("orders: want PO-HB-2612-002 line 20 (late) before line 10 (not late):\n%+v", rows)
	}
	// Order, line, part, status, ordered, confirmed, shipped, received,
	// accepted, rejected, inspected, open, requested, promised.
	l10, l20 := rows[at10].Cells, rows[at20].Cells
	if len(l10) != 14 || !strings.Contains(l10[3], "partly shipped") || !strings.Contains(l10[3], "seller: accepted") || l10[4] != "500 H87" || l10[6] != "100" ||
		l10[7] != "100" || l10[8] != "95" || l10[9] != "5" || l10[10] != "L-77 pass" || l10[11] != "405" || l10[12] == "" || l10[13] == "" {
		t.Errorf("orders: line 10 shows %q", l10)
	}
	if len(l20) != 14 || !strings.Contains(l20[3], "late") || !strings.Contains(l20[3], "seller: changed") || l20[5] != "250" || l20[6] != "0" || l20[11] != "250" {
		t.Errorf("orders: line 20 shows %q", l20)
	}
	shot("orders-en")

	// Import a CSV with one bad row: the row's error, nothing published.
	csv := tempFile(t, "발주.csv", "발주번호,발주일자,공급사사업자번호,공급사,항번,고객품번,품명,수량,단위,납기일자\n"+
		"PO-7,2026.11.20,312-86-00455,대성정밀,1,00123,브래킷,\"1,200\",EA,20261127\n"+
		"PO-7,2026.11.20,312-86-00455,대성정밀,2,00124,볼트,12OO,EA,20261127\n")
	run("switch to Korean", click("#lang"), drawnIn("ko"))
	run("import", chromedp.Navigate(base+"/#/import"), visible("#imp-file"),
		upload("#imp-file", csv),
		click("#imp-check"), visible("#imp-errors"))
	if got := textOf("#imp-out"); !strings.Contains(got, `column 수량: "12OO" is not a number`) || !strings.Contains(got, "아무것도 게시하지 않습니다") {
		t.Fatalf("import view does not show the bad row:\n%s", got)
	}
	shot("import-ko")
	// A good file: its documents, as they would be published, before
	// anything is.
	good := tempFile(t, "발주-정상.csv", "발주번호,발주일자,공급사사업자번호,공급사,항번,고객품번,품명,수량,단위,납기일자\n"+
		"PO-8,2026.11.20,312-86-00455,대성정밀,1,00123,브래킷,\"1,200\",EA,20261127\n")
	run("import a good file", upload("#imp-file", good), click("#imp-check"), visible("#imp-docs details"),
		click("#imp-docs details summary"))
	if got := textOf("#imp-docs"); !strings.Contains(got, "PO-8") || !strings.Contains(got, "00123") || !strings.Contains(got, "새로 게시") {
		t.Fatalf("the dry run does not show what would be published:\n%s", got)
	}
	shot("import-ko-preview")
	if recs := a.mustRun("records", "--channel", "한빛-대성", "--kind", "order"); strings.Contains(recs, "PO-8") {
		t.Fatalf("a dry run published:\n%s", recs)
	}
	run("English import", click("#lang"), drawnIn("en"), visible("#imp-file"),
		upload("#imp-file", csv),
		click("#imp-check"), visible("#imp-errors"))
	shot("import-en")
	run("Korean again", click("#lang"), drawnIn("ko"))
	run("record in Korean", chromedp.Navigate(base+"/#/record/"+order.CID), visible("#check .ok"))
	if koTime, koIssued := textOf("#rec-time"), textOf(issued); koIssued != "2026. 11. 23. 오전 9:00:00" || koTime == enTime || !strings.Contains(koTime, "오") {
		t.Fatalf("record view in Korean: time %q (in English %q), issuedAt %q", koTime, enTime, koIssued)
	}
	shot("record-ko")
	run("orders in Korean", chromedp.Navigate(base+"/#/orders"), visible("#orders"))
	shot("orders-ko")
	// A phone: every view fits its width (wide tables scroll in their
	// own box), with an invite's QR code and an import's errors shown.
	run("phone", chromedp.EmulateViewport(390, 844))
	for _, v := range []struct {
		name, path string
		steps      []chromedp.Action[chromedp.Void]
	}{
		{"overview", "/#/", []chromedp.Action[chromedp.Void]{visible("#channels")}},
		{"channel", "/#/channel/" + ch.ID, []chromedp.Action[chromedp.Void]{visible("#stream"),
			chromedp.SendKeys(chromedp.CSS("#invite-peer"), c.id), click("#invite-do"), visible("img.qr")}},
		{"record", "/#/record/" + order.CID, []chromedp.Action[chromedp.Void]{visible("#check .ok")}},
		{"orders", "/#/orders", []chromedp.Action[chromedp.Void]{visible("#orders")}},
		{"import", "/#/import", []chromedp.Action[chromedp.Void]{visible("#imp-file"), upload("#imp-file", csv), click("#imp-check"), visible("#imp-errors")}},
	} {
		run(v.name+" on a phone", append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(base + v.path)}, v.steps...)...)
		if w, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); err != nil || len(w) != 2 || w[0] > w[1] {
			t.Errorf("the %s view on a phone is %v px wide (page, window): %v", v.name, w, err)
		}
		shot(v.name + "-ko-phone")
	}

	// One partner of two goes offline: the overview names it and says
	// since when, while the other is online; the channel is not "in sync".
	run("desktop again", chromedp.EmulateViewport(1366, 768))
	b.stop()
	overviewUntil("overview, one partner offline", func(got string) bool {
		return strings.Contains(got, "대성정밀 ") && strings.Contains(got, " 오프라인 (") && strings.Contains(got, "부터)")
	})
	if got := textOf("#channels"); strings.Contains(got, "동기화됨") || strings.Contains(got, "세진소재") {
		t.Fatalf("with one partner offline and one online, the channel says:\n%s", got)
	}
	shot("overview-ko-offline")

	// Remove a member from the page: it asks first, then the member is
	// gone from the channel.
	member := fmt.Sprintf(`#members button[data-peer="%s"]`, c.id)
	run("channel view, to remove a member", chromedp.Navigate(base+"/#/channel/"+ch.ID), visible(member))
	run("remove a member", click(member), chromedp.WaitNotPresent(chromedp.CSS(member)), visible("#members"))
	select {
	case msg := <-dialogs:
		if !strings.Contains(msg, "세진소재") || !strings.Contains(msg, "제거할까요") {
			t.Fatalf("the page asked %q before removing 세진소재", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the page removed a member without asking")
	}
	if got := textOf("#members"); strings.Contains(got, "세진소재") || !strings.Contains(got, "대성정밀") {
		t.Fatalf("members after removing 세진소재:\n%s", got)
	}
	var after api.Channel
	a.mustJSON(&after, "channel", "show", "한빛-대성")
	if _, removed := after.Removed[c.id]; slices.Contains(after.Members, c.id) || !removed {
		t.Fatalf("after removing 세진소재: members %v, removed %v", after.Members, after.Removed)
	}
	shot("channel-ko-removed")

	// Refusals. From the page: a request without the session.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/v1/status", {credentials: "omit"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusUnauthorized {
		t.Fatalf("GET /v1/status without the session: %d, want 401", status)
	}
	// With the browser's own session, from outside the page: its cookie
	// (which every service on 127.0.0.1 the browser visits receives) and
	// its key (which only the dashboard's origin holds).
	jar, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, ck := range jar.Cookies {
		if ck.Name == "sangsaeng_session" {
			session = ck
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", session)
	}
	key, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem("sangsaeng-key")`))
	if err != nil || key == "" {
		t.Fatalf("the page holds no session key: %q %v", key, err)
	}
	if url, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); strings.Contains(url, key) {
		t.Fatalf("the session key stayed in the address bar: %s", url)
	}
	call := func(method, path string, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(`{"peer": "`+did+`"}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cookie := "sangsaeng_session=" + session.Value
	invitePath := "/v1/channels/" + ch.ID + "/invite"
	for _, tc := range []struct {
		what, method, path string
		hdr                map[string]string
		want               int
	}{
		{"the cookie alone", "GET", "/v1/status", map[string]string{"Cookie": cookie}, http.StatusForbidden},
		{"the key alone", "GET", "/v1/status", map[string]string{"X-Session-Key": key}, http.StatusUnauthorized},
		{"the session from a foreign Origin", "POST", invitePath, map[string]string{"Cookie": cookie, "X-Session-Key": key, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"the session from another site's page", "POST", invitePath, map[string]string{"Cookie": cookie, "X-Session-Key": key, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"the session and a wrong key", "POST", invitePath, map[string]string{"Cookie": cookie, "X-Session-Key": "0123", "Origin": base}, http.StatusForbidden},
		{"the session under a foreign Host", "GET", "/v1/status", map[string]string{"Cookie": cookie, "X-Session-Key": key, "Host": "evil.example"}, http.StatusMisdirectedRequest},
		{"the session from its own page", "POST", invitePath, map[string]string{"Cookie": cookie, "X-Session-Key": key, "Origin": base}, http.StatusOK},
	} {
		if got := call(tc.method, tc.path, tc.hdr); got != tc.want {
			t.Errorf("%s %s with %s: %d, want %d", tc.method, tc.path, tc.what, got, tc.want)
		}
	}
	t.Logf("screenshots of every view, in Korean and English, in %s", shots)
}
