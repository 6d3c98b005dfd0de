package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// cmdKinds lists the record kinds, or prints one kind's JSON Schema.
func cmdKinds(ctx context.Context, env *Env, args []string) error {
	f := env.flags("kinds [KIND]",
		"List the record kinds the node knows, or print the JSON Schema (draft 2020-12)\n"+
			"a KIND's body must follow.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 1); err != nil {
		return err
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		schema, err := c.Schema(ctx, pos[0])
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, schema, "", "  "); err != nil {
			return fmt.Errorf("schema of %s: bad answer from the daemon: %w", pos[0], err)
		}
		buf.WriteByte('\n')
		_, err = env.Stdout.Write(buf.Bytes())
		return err
	}
	kinds, err := c.Kinds(ctx)
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(orEmpty(kinds))
	}
	for _, k := range kinds {
		fmt.Fprintln(env.Stdout, k)
	}
	return nil
}
