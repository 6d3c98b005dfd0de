package main

import (
	"context"
	"fmt"
	"text/tabwriter"
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
	return tw.Flush()
}
