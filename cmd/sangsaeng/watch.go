package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdWatch prints records as the node accepts them, until interrupted.
func cmdWatch(ctx context.Context, env *Env, args []string) error {
	f := env.flags("watch [--channel C]",
		"Print one line per record as the node accepts it, until interrupted.\n"+
			"With --json, each line is the record in its JSON shape (JSON Lines).")
	channel := f.String("channel", "", "only records of `CHANNEL` (ID or name)")
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
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(env.Stdout)
	enc.SetEscapeHTML(false)
	return c.Watch(ctx, *channel, func(r api.Record) error {
		if env.JSON {
			r.Links = orEmpty(r.Links)
			return enc.Encode(r)
		}
		_, err := fmt.Fprintf(env.Stdout, "%s  %s  %s  %s #%d  %s\n",
			r.Time, short(r.Channel), r.Kind, short(r.Author), r.Seq, r.CID)
		return err
	})
}
