package main

import (
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"time"
)

func cmdDashboard(ctx context.Context, env *Env, args []string) error {
	f := env.flags("dashboard", "Print a link that signs a browser on this machine in to the daemon's web\n"+
		"dashboard, and open it where a desktop browser is there. The link holds a\n"+
		"one-time code, good for 2 minutes and for one browser; run the command again\n"+
		"for another. 웹 대시보드 로그인 링크를 출력합니다 (2분 동안, 한 번만 유효).")
	noOpen := f.Bool("no-open", false, "print the link only; do not start a browser")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	code, err := c.LoginCode(ctx)
	if err != nil {
		return err
	}
	url := c.Addr() + "/login?code=" + code.Code
	expires := time.Now().Add(time.Duration(code.ExpiresIn) * time.Second)
	if env.JSON {
		return env.printJSON(map[string]string{"url": url, "expires": expires.UTC().Format(time.RFC3339)})
	}
	fmt.Fprintln(env.Stdout, url)
	fmt.Fprintf(env.Stderr, "sign-in link for one browser, good until %s (로그인 링크: 한 번, %s까지 유효)\n",
		expires.Format("15:04:05"), expires.Format("15:04:05"))
	if !*noOpen {
		openBrowser(url)
	}
	return nil
}

// openBrowser starts the desktop's browser on url where there is one; on a
// server without a desktop it does nothing, and the printed link is the
// way in. The browser is given a file of the user's own (0600) that sends
// it on to url, not url itself: a command line is visible to every user of
// the machine, and the one-time code would be theirs to use first.
func openBrowser(url string) {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	p, err := exec.LookPath("xdg-open")
	if err != nil {
		return
	}
	f, err := os.CreateTemp("", "sangsaeng-dashboard-*.html")
	if err != nil {
		return
	}
	page := `<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
		`<meta http-equiv="refresh" content="0;url=` + html.EscapeString(url) + `"><title>sangsaeng</title>`
	_, werr := f.WriteString(page)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return
	}
	cmd := exec.Command(p, f.Name())
	if cmd.Start() != nil {
		os.Remove(f.Name())
		return
	}
	_ = cmd.Wait()
	time.Sleep(3 * time.Second) // for the browser to read it
	os.Remove(f.Name())
}
