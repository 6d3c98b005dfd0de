package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdWatch prints records as the node accepts them, until interrupted.
func cmdWatch(ctx context.Context, env *Env, args []string) error {
	f := env.flags("watch [--channel C] [--since ID]",
		"Print one line per record as the node stores it, until interrupted: the event id\n"+
			"(EPOCH-N, N the node's arrival number for the record), time, channel, kind,\n"+
			"author and seq, CID. With --json, each line is the record in its JSON shape with its event_id\n"+
			"(JSON Lines). --since ID starts after event ID (0: every record the node holds);\n"+
			"pass the last id printed to go on where an earlier watch stopped. When the\n"+
			"daemon restarts or the connection drops, watch resumes after the last id it\n"+
			"printed: nothing is missed and nothing printed twice.")
	channel := f.String("channel", "", "only records of `CHANNEL` (ID or name)")
	since := f.String("since", "", "start after event `ID` (0: from the first record); default: records from now on")
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
	o := api.WatchOptions{Channel: *channel, Since: *since, Retrying: func(err error, wait time.Duration) {
		fmt.Fprintf(env.Stderr, "sangsaeng: watch: %v; resuming in %v\n", err, wait.Round(time.Millisecond))
	}}
	return c.Watch(ctx, o, func(id string, r api.Record) error {
		if env.JSON {
			r.Links = orEmpty(r.Links)
			return enc.Encode(watchLine{EventID: id, Record: r})
		}
		_, err := fmt.Fprintf(env.Stdout, "%s  %s  %s  %s  %s #%d  %s\n",
			id, r.Time, short(r.Channel), r.Kind, short(r.Author), r.Seq, r.CID)
		return err
	})
}

// watchLine is a line of `watch --json`: the record with its event id.
type watchLine struct {
	EventID string `json:"event_id"`
	api.Record
}
