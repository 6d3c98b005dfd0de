package main

import (
	"context"
	"fmt"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdDisclose passes another company's record to a channel.
func cmdDisclose(ctx context.Context, env *Env, args []string) error {
	f := env.flags("disclose CID --channel C [--note TEXT]",
		"Pass a record the node holds (a supplier's inspection certificate, a carbon\n"+
			"footprint) unchanged to another channel (공개), in a disclosure record: its members\n"+
			"check the original's signature and CID themselves, though they never meet its\n"+
			"author. A record whose author's terms forbid disclosure is refused. Prints the\n"+
			"disclosure's CID.")
	channel := f.String("channel", "", "the `CHANNEL` to pass the record to")
	note := f.String("note", "", "a `TEXT` for the channel: why it is passed on")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 1, 1); err != nil {
		return err
	}
	if *channel == "" {
		return f.usageErrorf("--channel is required")
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	res, err := c.Disclose(ctx, api.Disclose{CID: pos[0], Channel: *channel, Note: *note})
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(res)
	}
	_, err = fmt.Fprintln(env.Stdout, res.CID)
	return err
}
