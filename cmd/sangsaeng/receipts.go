package main

import (
	"context"
	"fmt"
	"text/tabwriter"
)

func cmdReceipts(ctx context.Context, env *Env, args []string) error {
	f := env.flags("receipts CHANNEL [--request]",
		"Which partner holds this company's records of CHANNEL up to which seq, since when: from each\n"+
			"member's newest signed receipt (보유 확인). Members send one when what they hold changes, at\n"+
			"most every receipt_interval; with --request this node asks every connected member for one now.\n"+
			"--json gives each receipt's signed envelope, which `sangsaeng verify` checks offline.")
	request := f.Bool("request", false, "ask every connected member for a receipt now")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 1, 1); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	rs, err := c.Receipts(ctx, pos[0], *request)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(rs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tNAME\tHOLDS\tSINCE\tRECEIPT\n")
	for _, r := range rs {
		holds := fmt.Sprintf("%d of %d", r.Seq, r.Head)
		if r.CID == "" {
			holds = "no receipt yet"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Member, dash(r.Name), holds, dash(r.Since), dash(r.CID))
	}
	return tw.Flush()
}
