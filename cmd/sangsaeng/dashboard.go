package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sangsaeng/sangsaeng/node/api"
)

func cmdDashboard(ctx context.Context, env *Env, args []string) error {
	f := env.flags("dashboard", "Print the address of the daemon's web dashboard, with the API token in the\n"+
		"link's fragment (which browsers do not send to servers). Open it in a browser on this machine.")
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
	if _, err := c.ID(ctx); err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(env.home(), api.TokenFile))
	if err != nil {
		return err
	}
	url := c.Addr() + "/#token=" + strings.TrimSpace(string(tok))
	if env.JSON {
		return env.printJSON(map[string]string{"url": url})
	}
	_, err = fmt.Fprintln(env.Stdout, url)
	return err
}
