package main

import (
	"context"
)

// cmdGet prints a record as JSON, or writes its signed envelope.
func cmdGet(ctx context.Context, env *Env, args []string) error {
	f := env.flags("get CID [--raw]",
		"Print the record with this CID as JSON, or with --raw write its signed envelope\n"+
			"(the bytes `sangsaeng verify FILE` checks) to stdout.")
	raw := f.Bool("raw", false, "write the signed envelope bytes instead")
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
	if *raw {
		b, err := c.GetRaw(ctx, pos[0])
		if err != nil {
			return err
		}
		_, err = env.Stdout.Write(b)
		return err
	}
	r, err := c.Get(ctx, pos[0])
	if err != nil {
		return err
	}
	r.Links = orEmpty(r.Links)
	return env.printJSON(r)
}
