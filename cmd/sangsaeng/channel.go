package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sangsaeng/sangsaeng/node/api"
)

const channelSynopsis = "channel create | invite | join | ls | show | remove-member"

var channelCommands = [][2]string{
	{"create NAME [--member PEER-ID]... [--description D]", "found a channel with this node as admin"},
	{"invite CHANNEL PEER-ID", "add a member and print the invite code to give them"},
	{"join CODE", "join a channel with an invite code"},
	{"ls", "list the channels this node is a member of"},
	{"show CHANNEL", "a channel's admins, members, heads and fork evidence"},
	{"remove-member CHANNEL PEER-ID", "remove a member (admins only)"},
}

// cmdChannel dispatches the channel subcommands.
func cmdChannel(ctx context.Context, env *Env, args []string) error {
	sub, rest, help, err := splitCommand(args)
	if err != nil {
		return usageErrorf(channelSynopsis, "%s", err)
	}
	switch sub {
	case "":
		if help {
			return env.groupHelp(channelSynopsis,
				"Channels are the sets of companies that share a stream of records.\n"+
					"CHANNEL is a channel's ID, or its name where the name is unambiguous.",
				channelCommands)
		}
		return usageErrorf(channelSynopsis, "missing channel command")
	case "create":
		return cmdChannelCreate(ctx, env, rest)
	case "invite":
		return cmdChannelInvite(ctx, env, rest)
	case "join":
		return cmdChannelJoin(ctx, env, rest)
	case "ls":
		return cmdChannelLs(ctx, env, rest)
	case "show":
		return cmdChannelShow(ctx, env, rest)
	case "remove-member":
		return cmdChannelRemoveMember(ctx, env, rest)
	}
	return usageErrorf(channelSynopsis, "unknown channel command %q", sub)
}

func cmdChannelCreate(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel create NAME [--member PEER-ID]... [--description D]",
		"Found a channel with this node as its admin and first member. The channel's ID\n"+
			"is the CID of its genesis record. Members named here are in from the start;\n"+
			"give each the code of `sangsaeng channel invite` to join.")
	var members stringList
	f.Var(&members, "member", "the `PEER-ID` of a first member")
	desc := f.String("description", "", "what the channel is for, in a `TEXT` for people")
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
	ch, err := c.CreateChannel(ctx, api.CreateChannel{Name: pos[0], Members: members, Description: *desc})
	if err != nil {
		return err
	}
	return env.printChannel(ch)
}

func cmdChannelInvite(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel invite CHANNEL PEER-ID",
		"Add a peer to a channel (this node must be an admin) and print an invite code:\n"+
			"the partner runs `sangsaeng channel join CODE`.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 2, 2); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	inv, err := c.Invite(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(inv)
	}
	_, err = fmt.Fprintln(env.Stdout, inv.Code)
	return err
}

func cmdChannelJoin(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel join CODE",
		"Join a channel with the invite code an admin gave you: connect to the inviter,\n"+
			"fetch the channel's governance records, check membership and subscribe.")
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
	ch, err := c.Join(ctx, pos[0])
	if err != nil {
		return err
	}
	return env.printChannel(ch)
}

func cmdChannelLs(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel ls", "List the channels this node is a member of.")
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
	chs, err := c.Channels(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(orEmpty(chs))
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CHANNEL ID\tNAME\tMEMBERS\tRECORDS\tFLAGGED\n")
	for _, ch := range chs {
		var n uint64
		for _, h := range ch.Heads {
			n += h
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", ch.ID, dash(ch.Name), len(ch.Members), n, len(ch.Flagged))
	}
	return tw.Flush()
}

func cmdChannelShow(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel show CHANNEL", "Show a channel: its admins, members, how far each member's records are held\n(head seq), removed members, sync with each partner (records behind), and fork evidence.")
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
	ch, err := c.Channel(ctx, pos[0])
	if err != nil {
		return err
	}
	return env.printChannel(ch)
}

func cmdChannelRemoveMember(ctx context.Context, env *Env, args []string) error {
	f := env.flags("channel remove-member CHANNEL PEER-ID",
		"Remove a member from a channel (this node must be an admin). The member's records\n"+
			"up to its current head stay valid; later ones are rejected.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 2, 2); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	ch, err := c.RemoveMember(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	return env.printChannel(ch)
}

// printChannel prints a channel: its JSON shape, or a summary and a table of
// members for people.
func (e *Env) printChannel(ch *api.Channel) error {
	if e.JSON {
		ch.Admins, ch.Members = orEmpty(ch.Admins), orEmpty(ch.Members)
		if ch.Heads == nil {
			ch.Heads = map[string]uint64{}
		}
		return e.printJSON(ch)
	}
	return writeChannel(e.Stdout, ch)
}

func writeChannel(w io.Writer, ch *api.Channel) error {
	fmt.Fprintf(w, "channel  %s\nname     %s\n\n", ch.ID, dash(ch.Name))
	// Members first, then removed members, each with its role and head.
	peers := slices.Clone(ch.Members)
	for p := range ch.Removed {
		if !slices.Contains(peers, p) {
			peers = append(peers, p)
		}
	}
	slices.SortStableFunc(peers[len(ch.Members):], strings.Compare)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tROLE\tHEAD\tNOTE\n")
	for _, p := range peers {
		role := "member"
		if slices.Contains(ch.Admins, p) {
			role = "admin"
		}
		var notes []string
		if last, ok := ch.Removed[p]; ok {
			role = "removed"
			notes = append(notes, fmt.Sprintf("records after seq %d rejected", last))
		}
		if slices.Contains(ch.Flagged, p) {
			notes = append(notes, "FLAGGED: signed two records for one seq")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p, role, ch.Heads[p], dash(strings.Join(notes, "; ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ch.Sync) > 0 {
		fmt.Fprintf(w, "\nsync:\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "PARTNER\tBEHIND\tLAST SYNC\tRECEIVED\tERROR\n")
		for _, s := range ch.Sync {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", s.Peer, s.Behind, dash(s.Last), s.Received, dash(s.Error))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(ch.Forks) > 0 {
		fmt.Fprintf(w, "\nfork evidence:\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "AUTHOR\tSEQ\tCIDS\n")
		for _, fk := range ch.Forks {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", fk.Author, fk.Seq, strings.Join(fk.CIDs, " "))
		}
		return tw.Flush()
	}
	return nil
}
