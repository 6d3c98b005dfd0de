package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdStatus prints the node's health at a glance.
func cmdStatus(ctx context.Context, env *Env, args []string) error {
	f := env.flags("status", "Print the node's health at a glance (상태): the store, partners online and offline,\n"+
		"each channel's sync lag, and recent store errors. Exits with status 1 when the node is\n"+
		"unhealthy (its store failed in the last 10 minutes), 3 when no daemon answers.")
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
	st, err := c.Status(ctx)
	if errors.Is(err, api.ErrNoDaemon) {
		// Apart from "unhealthy", for monitoring.
		return &exitError{code: 3, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	unhealthy := func() error {
		if st.Healthy {
			return nil
		}
		return &exitError{code: 1, msg: "the node is unhealthy: " + strings.Join(st.Problems, "; ")}
	}
	if env.JSON {
		if err := env.printJSON(st); err != nil {
			return err
		}
		return unhealthy()
	}
	w := env.Stdout
	state := "healthy (정상)"
	if !st.Healthy {
		state = "UNHEALTHY (이상)"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s  %s\n", dash(st.Name), st.ID)
	fmt.Fprintf(tw, "state\t%s\n", state)
	for _, p := range st.Problems {
		fmt.Fprintf(tw, "\t%s\n", p)
	}
	fmt.Fprintf(tw, "version\t%s, up %s\n", st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String())
	enc := "plain"
	if st.Store.Encrypted {
		enc = "encrypted"
	}
	fmt.Fprintf(tw, "store\t%s (%s): %d records, %.1f MB, %d errors since start\n", st.Store.Path, enc, st.Store.Records, float64(st.Store.Bytes)/1e6, st.Store.Errors)
	fmt.Fprintf(tw, "partners\t%d online, %d offline\n", len(st.Peers.Connected), len(st.Peers.Offline))
	for _, p := range st.Peers.Offline {
		fmt.Fprintf(tw, "\toffline: %s %s\n", dash(p.Name), p.ID)
	}
	printReachability(tw, st.Reachability)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Channels) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHANNEL\tMEMBERS\tOWN HEAD\tSYNC")
		for _, ch := range st.Channels {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", dash(ch.Name), ch.Members, ch.OwnHead, syncState(ch.Lag, ch.Partners))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.RecentErrors) > 0 {
		fmt.Fprintln(w, "\nrecent store errors, newest first:")
		for _, e := range st.RecentErrors {
			fmt.Fprintf(w, "  %s  %s  %s\n", e.Time, e.Op, e.Message)
		}
	}
	return unhealthy()
}

// syncState says in a few words where a channel's sync stands.
func syncState(lag uint64, partners []api.PartnerSync) string {
	offline := 0
	for _, p := range partners {
		if !p.Online {
			offline++
		}
	}
	var out string
	switch {
	case len(partners) == 0:
		out = "no partners"
	case lag > 0:
		out = fmt.Sprintf("catching up %d records", lag)
	default:
		out = "in sync"
		synced := false
		for _, p := range partners {
			synced = synced || p.Last != ""
		}
		if !synced {
			out = "not synced yet"
		}
	}
	if offline > 0 {
		out += fmt.Sprintf(", %d of %d partners offline", offline, len(partners))
	}
	return out
}
