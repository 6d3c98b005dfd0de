package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sangsaeng/sangsaeng/node"
)

// cmdInit creates a node's home: identity, config, API token and data.
func cmdInit(ctx context.Context, env *Env, args []string) error {
	f := env.flags("init [--name NAME] [--listen MULTIADDR]... [--api HOST:PORT] [--encryption-key-file PATH]",
		"Create a node in the home directory: its identity (identity.key), config.toml,\n"+
			"the API token (api.token) and the data directory. An existing identity is\n"+
			"never overwritten. --api here sets the address the daemon will serve its API on.")
	name := f.String("name", "", "the company `NAME` shown to partners")
	var listen stringList
	f.Var(&listen, "listen", "`MULTIADDR` to listen on for partners (default /ip4/0.0.0.0/tcp/4801 and /ip4/0.0.0.0/udp/4801/quic-v1)")
	keyFile := f.String("encryption-key-file", "", "encrypt the data at rest with the AES key in `PATH`")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	home := env.home()
	cfg, err := node.Init(home, node.InitOptions{
		Name:              *name,
		Listen:            listen,
		API:               env.API,
		EncryptionKeyFile: *keyFile,
	})
	if errors.Is(err, node.ErrExists) {
		return fmt.Errorf("a node already exists in %s and init never overwrites its identity (pass --home to create another)", home)
	}
	if err != nil {
		return err
	}
	id, err := cfg.PeerID()
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(struct {
			ID   string `json:"id"`
			Name string `json:"name"`
			Home string `json:"home"`
		}{id, cfg.Name, cfg.Home})
	}
	next := "sangsaeng daemon"
	if env.Home != "" {
		next += " --home " + shellQuote(cfg.Home)
	}
	fmt.Fprintf(env.Stdout, "peer ID  %s\nhome     %s\n\nNext, start the node: %s\n", id, cfg.Home, next)
	return nil
}
