package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sangsaeng/sangsaeng/node/api"
)

const keySynopsis = "key [ls | rotate | add-device | revoke KEY [--from-seq N] [--channel C]]"

// cmdKey dispatches the key subcommands; ls is the default.
func cmdKey(ctx context.Context, env *Env, args []string) error {
	sub, rest, help, err := splitCommand(args)
	if err != nil {
		return usageErrorf(keySynopsis, "%s", err)
	}
	switch sub {
	case "", "ls":
		if sub == "" && help {
			return env.groupHelp(keySynopsis, "The company's keys (키): its first key names it; the key log says which keys sign for it, and every partner holds that log.", [][2]string{
				{"ls", "list the company's keys and which one this node signs with (the default)"},
				{"rotate [--note TEXT]", "sign with a new key from now on; the old key is moved to keys/retired/"},
				{"add-device [--note TEXT]", "make a key for another server of the company (written to keys/devices/)"},
				{"revoke KEY [--from-seq N] [--channel C]", "take a key out of force: records it signs from seq N on are refused everywhere"},
			})
		}
		return cmdKeyLs(ctx, env, rest)
	case "rotate":
		return cmdKeyRotate(ctx, env, rest)
	case "add-device":
		return cmdKeyAddDevice(ctx, env, rest)
	case "revoke":
		return cmdKeyRevoke(ctx, env, rest)
	}
	return usageErrorf(keySynopsis, "unknown key command %q", sub)
}

func cmdKeyLs(ctx context.Context, env *Env, args []string) error {
	f := env.flags("key ls", "List the company's keys: in force, rotated or revoked, and the one this node signs with.")
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
	k, err := c.Keys(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(k)
	}
	fmt.Fprintf(env.Stdout, "company %s, key log of %d entries; this node signs with %s\n", k.Company, k.Entries, k.Signer)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tSTATE\tADDED\tSIGNS UNTIL\n")
	for _, ki := range k.Keys {
		state := ki.State
		if ki.Signing {
			state += " (this node)"
		}
		if ki.By != "" {
			state += " by " + shortKey(ki.By)
		}
		until := "-"
		if ki.State != "in force" {
			var parts []string
			for _, ch := range slices.Sorted(maps.Keys(ki.From)) {
				parts = append(parts, fmt.Sprintf("%s: seq %d", shortKey(ch), ki.From[ch]-1))
			}
			until = "nothing more"
			if len(parts) > 0 {
				until = strings.Join(parts, ", ")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ki.Key, state, addedAt(ki.Added), until)
	}
	return tw.Flush()
}

func addedAt(entry uint64) string {
	if entry == 0 {
		return "first key"
	}
	return fmt.Sprintf("entry %d", entry)
}

// shortKey is the tail of a peer ID or CID, as people tell them apart.
func shortKey(s string) string {
	if len(s) > 10 {
		return "…" + s[len(s)-8:]
	}
	return s
}

func cmdKeyRotate(ctx context.Context, env *Env, args []string) error {
	return keyChange(ctx, env, args, "key rotate [--note TEXT]",
		"Make a new key and sign with it from now on. The change goes to every channel, signed by the\n"+
			"key it replaces; records that key signed before stay valid. The old key file is moved to\n"+
			"keys/retired/ (identity.key stays: it names the company and its libp2p host).",
		"why, for the partners (`TEXT`)", (*api.Client).RotateKey,
		func(k *api.KeyChanged) string { return "this node now signs with " + k.Key })
}

func cmdKeyAddDevice(ctx context.Context, env *Env, args []string) error {
	return keyChange(ctx, env, args, "key add-device [--note TEXT]",
		"Make a key for another server of the company (a backup node) and put it in force.\n"+
			"The key is written to keys/devices/ in this node's home: carry it to that server, then delete it here.",
		"which server, for the partners (`TEXT`)", (*api.Client).AddDeviceKey,
		func(k *api.KeyChanged) string {
			return fmt.Sprintf("device key %s is in force; its file is %s", k.Key, k.File)
		})
}

// keyChange runs a key command that takes a note and puts a key in force.
func keyChange(ctx context.Context, env *Env, args []string, synopsis, help, noteHelp string,
	call func(*api.Client, context.Context, string) (*api.KeyChanged, error), done func(*api.KeyChanged) string) error {
	f := env.flags(synopsis, help)
	note := f.String("note", "", noteHelp)
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
	k, err := call(c, ctx, *note)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(k)
	}
	fmt.Fprintln(env.Stdout, done(k))
	return nil
}

func cmdKeyRevoke(ctx context.Context, env *Env, args []string) error {
	f := env.flags("key revoke KEY [--from-seq N] [--channel C]",
		"Take a key out of force. Records it signs from seq N of the company's chain on are refused\n"+
			"by every partner (in channel C only, with --channel); without --from-seq, from the next record.\n"+
			"Records it signed before stay valid. This node must not sign with that key: rotate first.")
	from := f.Uint64("from-seq", 0, "the first `SEQ` the key no longer signs")
	ch := f.String("channel", "", "the `CHANNEL` (name or ID) --from-seq counts in")
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
	if err := c.RevokeKey(ctx, api.KeyChange{Key: pos[0], FromSeq: *from, Channel: *ch}); err != nil {
		return err
	}
	if !env.JSON {
		fmt.Fprintf(env.Stdout, "revoked %s\n", pos[0])
	}
	return nil
}
