package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

// cmdPeers lists the connected peers.
func cmdPeers(ctx context.Context, env *Env, args []string) error {
	f := env.flags("peers", "List the connected peers: ID, company name, address, latency and the\nnumber of channels shared with them.")
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
	peers, err := c.Peers(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(orEmpty(peers))
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PEER ID\tNAME\tADDRESS\tLATENCY\tCHANNELS\n")
	for _, p := range peers {
		addr := "-"
		if len(p.Addrs) > 0 {
			addr = p.Addrs[0]
			if len(p.Addrs) > 1 {
				addr += fmt.Sprintf(" (+%d)", len(p.Addrs)-1)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f ms\t%d\n", p.ID, dash(p.Name), addr, p.LatencyMs, len(p.Channels))
	}
	return tw.Flush()
}
