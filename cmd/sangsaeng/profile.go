package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

const profileSynopsis = "profile set --name N [--brn 1234567890]"

// cmdProfile dispatches the profile subcommands.
func cmdProfile(ctx context.Context, env *Env, args []string) error {
	sub, rest, help, err := splitCommand(args)
	if err != nil {
		return usageErrorf(profileSynopsis, "%s", err)
	}
	switch sub {
	case "":
		if help {
			return env.groupHelp(profileSynopsis, "The company profile is a signed record the node shares with its partners.", [][2]string{
				{"set --name N [--brn NUMBER]", "set the company name and business registration number"},
			})
		}
		return usageErrorf(profileSynopsis, "missing profile command")
	case "set":
		return cmdProfileSet(ctx, env, rest)
	}
	return usageErrorf(profileSynopsis, "unknown profile command %q", sub)
}

func cmdProfileSet(ctx context.Context, env *Env, args []string) error {
	f := env.flags(profileSynopsis,
		"Set the company profile and share it, signed, in every channel.")
	name := f.String("name", "", "the company `NAME`")
	brn := f.String("brn", "", "the business registration number (사업자등록번호), `NUMBER` of 10 digits; dashes are dropped")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return f.usageErrorf("--name is required")
	}
	p := api.Profile{Name: *name, BRN: strings.ReplaceAll(*brn, "-", "")}
	if p.BRN != "" && !protocol.ValidBRN(p.BRN) {
		return f.usageErrorf("--brn %s is not a business registration number: 10 digits whose last is the check digit", *brn)
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	if err := c.SetProfile(ctx, p); err != nil {
		return err
	}
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "profile set: %s\n", p.Name)
	}
	return nil
}
