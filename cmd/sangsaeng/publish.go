package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// cmdPublish signs and publishes a record whose body is JSON from a file or stdin.
func cmdPublish(ctx context.Context, env *Env, args []string) error {
	f := env.flags("publish CHANNEL KIND [FILE|-] [--link REL=CID]...",
		"Sign a record of KIND with the body in FILE (a JSON object; stdin when FILE is\n"+
			"- or absent), store it and publish it in CHANNEL. Prints the record's CID.\n"+
			"`sangsaeng kinds KIND` prints the JSON Schema the body must follow.")
	var links linkList
	f.Var(&links, "link", "add a link `REL=CID` to another record (fulfils=bafy…, supersedes=bafy…)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 2, 3); err != nil {
		return err
	}
	channel, kind := pos[0], pos[1]
	src, body := "stdin", []byte(nil)
	if len(pos) == 3 && pos[2] != "-" {
		src = pos[2]
		body, err = readFileLimited(src, protocol.MaxRecordSize, "body")
	} else {
		body, err = io.ReadAll(io.LimitReader(env.Stdin, protocol.MaxRecordSize+1))
		if err == nil && len(body) > protocol.MaxRecordSize {
			err = fmt.Errorf("body in stdin is more than %d bytes: %w (the limit is %d bytes)", protocol.MaxRecordSize, protocol.ErrTooLarge, protocol.MaxRecordSize)
		}
	}
	if err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	// The daemon checks it too; checking here names the file.
	if _, err := protocol.ParseBody(body); err != nil {
		return fmt.Errorf("body in %s: %w", src, err)
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	res, err := c.Publish(ctx, channel, api.Publish{Kind: kind, Body: json.RawMessage(body), Links: links})
	if err != nil {
		return err
	}
	if env.JSON {
		return env.printJSON(res)
	}
	_, err = fmt.Fprintln(env.Stdout, res.CID)
	return err
}

// readFileLimited reads the file at path, refusing one beyond limit bytes
// before it reads it: what is a body or an envelope there is at most a few
// hundred KiB, and a file named by mistake may be a disk image.
func readFileLimited(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s in %s is %d bytes: %w (the limit is %d bytes)", what, path, st.Size(), protocol.ErrTooLarge, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit { // it grew since
		err = fmt.Errorf("%s in %s is more than %d bytes: %w (the limit is %d bytes)", what, path, limit, protocol.ErrTooLarge, limit)
	}
	return b, err
}
