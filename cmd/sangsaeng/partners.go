package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/sangsaeng/sangsaeng/node/api"
)

const partnersSynopsis = "partners [ls | add PEER-ID MULTIADDR... [--name N] | rm PEER-ID]"

// cmdPartners dispatches the partners subcommands; ls is the default.
func cmdPartners(ctx context.Context, env *Env, args []string) error {
	sub, rest, help, err := splitCommand(args)
	if err != nil {
		return usageErrorf(partnersSynopsis, "%s", err)
	}
	switch sub {
	case "", "ls":
		if sub == "" && help {
			return env.groupHelp(partnersSynopsis, "The address book of partner companies, which the node dials and lets in.", [][2]string{
				{"ls", "list the partners (the default)"},
				{"add PEER-ID MULTIADDR... [--name N]", "add or update a partner and dial it"},
				{"rm PEER-ID", "remove a partner"},
			})
		}
		return cmdPartnersLs(ctx, env, rest)
	case "add":
		return cmdPartnersAdd(ctx, env, rest)
	case "rm":
		return cmdPartnersRm(ctx, env, rest)
	}
	return usageErrorf(partnersSynopsis, "unknown partners command %q", sub)
}

func cmdPartnersLs(ctx context.Context, env *Env, args []string) error {
	f := env.flags("partners ls", "List the partners in the address book.")
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
	ps, err := c.Partners(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(orEmpty(ps))
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PEER ID\tNAME\tADDRESSES\n")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, dash(p.Name), dash(strings.Join(p.Addrs, " ")))
	}
	return tw.Flush()
}

func cmdPartnersAdd(ctx context.Context, env *Env, args []string) error {
	f := env.flags("partners add PEER-ID MULTIADDR... [--name N]",
		"Add a partner to the address book, or update its addresses, and dial it.\n"+
			"Each MULTIADDR is an address of the partner, like /ip4/203.0.113.7/tcp/4801.")
	name := f.String("name", "", "the partner's company `NAME`, for people")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 2, -1); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	p := api.Partner{ID: pos[0], Name: *name, Addrs: pos[1:]}
	if err := c.AddPartner(ctx, p); err != nil {
		return err
	}
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "added partner %s\n", p.ID)
	}
	return nil
}

func cmdPartnersRm(ctx context.Context, env *Env, args []string) error {
	f := env.flags("partners rm PEER-ID", "Remove a partner from the address book.")
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
	if err := c.RemovePartner(ctx, pos[0]); err != nil {
		return err
	}
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "removed partner %s\n", pos[0])
	}
	return nil
}
