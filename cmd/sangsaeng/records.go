package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdRecords lists records, newest first.
func cmdRecords(ctx context.Context, env *Env, args []string) error {
	f := env.flags("records [--channel C] [--kind K] [--author P] [--since T] [--limit N]",
		"List records, newest first. Without flags, the newest records of every channel.")
	var q api.Query
	f.StringVar(&q.Channel, "channel", "", "only records of `CHANNEL` (ID or name)")
	f.StringVar(&q.Kind, "kind", "", "only records of `KIND`")
	f.StringVar(&q.Author, "author", "", "only records signed by `PEER-ID`")
	since := f.String("since", "", "only records whose time is at or after `T`: RFC 3339, a date (2026-11-22) or a duration ago (36h)")
	f.IntVar(&q.Limit, "limit", 0, "at most `N` records (default: the daemon's)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	if q.Limit < 0 {
		return f.usageErrorf("--limit %d: want 0 or more", q.Limit)
	}
	if *since != "" {
		if q.Since, err = parseSince(*since, time.Now()); err != nil {
			return f.usageErrorf("--since %s: %v", *since, err)
		}
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	rs, err := c.Records(ctx, q)
	if err != nil {
		return err
	}
	if env.JSON {
		rs = orEmpty(rs)
		for i := range rs {
			rs[i].Links = orEmpty(rs[i].Links)
		}
		return env.printJSON(rs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TIME\tCHANNEL\tAUTHOR\tSEQ\tKIND\tCID\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Time, short(r.Channel), short(r.Author), r.Seq, r.Kind, r.CID)
	}
	return tw.Flush()
}

// parseSince reads --since: an RFC 3339 time, a date (its midnight in the
// location of now) or a duration before now; it returns RFC 3339.
func parseSince(s string, now time.Time) (string, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.Format(time.RFC3339Nano), nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, now.Location()); err == nil {
		return t.Format(time.RFC3339), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("want an RFC 3339 time (2026-11-22T09:30:00+09:00), a date (2026-11-22) or a duration (36h)")
}
