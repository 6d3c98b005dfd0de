package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdID prints the node's peer ID, name and addresses.
func cmdID(ctx context.Context, env *Env, args []string) error {
	f := env.flags("id", "Print the node's peer ID, company name, and its listen and observed addresses.")
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
	id, err := c.ID(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		id.Addrs = orEmpty(id.Addrs)
		id.Reachability.Public = orEmpty(id.Reachability.Public)
		id.Reachability.RelayAddrs = orEmpty(id.Reachability.RelayAddrs)
		if id.Reachability.Relays == nil {
			id.Reachability.Relays = []api.RelayRef{}
		}
		return env.printJSON(id)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "peer ID\t%s\n", id.ID)
	fmt.Fprintf(tw, "name\t%s\n", dash(id.Name))
	if len(id.Addrs) == 0 {
		fmt.Fprintf(tw, "addrs\t-\n")
	}
	for i, a := range id.Addrs {
		label := ""
		if i == 0 {
			label = "addrs"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, a)
	}
	printReachability(tw, id.Reachability)
	return tw.Flush()
}

// reachabilityText says in words how partners reach the node.
var reachabilityText = map[string]string{
	"public":  "public: partners dial it directly",
	"relayed": "behind NAT: partners reach it through its relays",
	"private": "private: partners cannot dial it, and it holds no relay slot (set relay.use in config.toml)",
	"unknown": "not known yet (no partner has tested its addresses)",
}

// printReachability writes the reachability lines of `id` and `status`.
func printReachability(tw io.Writer, r api.Reachability) {
	text, ok := reachabilityText[r.State]
	if !ok {
		text = r.State
	}
	fmt.Fprintf(tw, "reachability\t%s\n", text)
	for _, rel := range r.Relays {
		state := "no slot"
		switch {
		case rel.Reserved:
			state = "slot until " + rel.Expires
		case rel.Error != "":
			state = "no slot: " + rel.Error
		}
		fmt.Fprintf(tw, "relay\t%s %s (%s, from %s)\n", dash(rel.Name), rel.ID, state, rel.Source)
	}
	for _, a := range r.RelayAddrs {
		fmt.Fprintf(tw, "relay addr\t%s\n", a)
	}
	if r.RelayService {
		fmt.Fprintf(tw, "relay service\ton, for partners only\n")
	}
}
