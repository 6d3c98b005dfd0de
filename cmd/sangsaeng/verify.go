package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// cmdVerify checks a record: a stored one by CID, or a signed envelope in a
// file, offline when no daemon runs.
func cmdVerify(ctx context.Context, env *Env, args []string) error {
	f := env.flags("verify CID | FILE",
		"Check a record's signature, CID, schema, membership and chain position.\n"+
			"With a FILE (signed envelope bytes, as `sangsaeng get --raw` writes; - for stdin)\n"+
			"and no daemon running, the signature, CID and schema are checked offline and\n"+
			"the chain position is not. Exits with status 1 when the record does not verify.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 1, 1); err != nil {
		return err
	}
	res, offline, err := verify(ctx, env, pos[0])
	if err != nil {
		return err
	}
	if env.JSON {
		res.Errors = orEmpty(res.Errors)
		if err := env.printJSON(res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		ok := "yes"
		if !res.OK {
			ok = "NO"
		}
		fmt.Fprintf(tw, "ok\t%s\ncid\t%s\nauthor\t%s\n", ok, dash(res.CID), dash(res.Author))
		for _, e := range res.Errors {
			fmt.Fprintf(tw, "error\t%s\n", e)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if offline {
		fmt.Fprintf(env.Stderr, "sangsaeng: no daemon answers: checked signature, CID and schema offline; membership and chain position were not checked\n")
	}
	if !res.OK {
		return &exitError{code: 1, msg: "the record does not verify"}
	}
	return nil
}

// verify checks arg, a file of envelope bytes or a CID. offline is set when
// the check was made without a daemon.
func verify(ctx context.Context, env *Env, arg string) (v *api.Verify, offline bool, err error) {
	envelope, isFile, err := readEnvelope(env, arg)
	if err != nil {
		return nil, false, err
	}
	c, err := env.Client()
	if err != nil {
		if isFile {
			// No node here at all: a file can still be checked.
			return verifyOffline(envelope), true, nil
		}
		return nil, false, err
	}
	if !isFile {
		v, err = c.VerifyCID(ctx, arg)
		return v, false, err
	}
	v, err = c.Verify(ctx, envelope)
	if errors.Is(err, api.ErrNoDaemon) {
		return verifyOffline(envelope), true, nil
	}
	return v, false, err
}

// readEnvelope reads arg when it names a file (or is - for stdin).
func readEnvelope(env *Env, arg string) (b []byte, isFile bool, err error) {
	if arg == "-" {
		b, err = io.ReadAll(io.LimitReader(env.Stdin, protocol.MaxEnvelopeSize+1))
		return b, true, err
	}
	st, err := os.Stat(arg)
	if err != nil || st.IsDir() {
		return nil, false, nil // a CID
	}
	b, err = readFileLimited(arg, protocol.MaxEnvelopeSize, "envelope")
	return b, true, err
}

// verifyOffline checks an envelope with nothing but the envelope: signature,
// CID and the body against its kind's schema.
func verifyOffline(envelope []byte) *api.Verify {
	v := &api.Verify{Errors: []string{}}
	s, err := protocol.Open(envelope)
	if err != nil {
		v.Errors = append(v.Errors, err.Error())
		// Name the record if its bytes can be read at all.
		if s, err := protocol.Load(envelope); err == nil {
			v.CID, v.Author = s.CID.String(), s.Record.Author.String()
		}
		return v
	}
	v.CID, v.Author = s.CID.String(), s.Record.Author.String()
	if err := protocol.ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
		var be *protocol.BodyError
		if errors.As(err, &be) && len(be.Causes) > 0 {
			for _, c := range be.Causes { // one line per broken rule
				v.Errors = append(v.Errors, be.Kind+" body: "+c.String())
			}
		} else {
			v.Errors = append(v.Errors, err.Error())
		}
	}
	v.OK = len(v.Errors) == 0
	return v
}
