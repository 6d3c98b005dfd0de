package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/evidence"
	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// cmdVerify checks a record: a stored one by CID, or a signed envelope in a
// file, offline when no daemon runs.
func cmdVerify(ctx context.Context, env *Env, args []string) error {
	f := env.flags("verify CID | FILE | BUNDLE.car",
		"Check a record's signature, CID, schema, membership and chain position.\n"+
			"A CAR evidence bundle (`sangsaeng export --format car`) is checked offline, with\n"+
			"nothing else: every block's hash, every signature and CID, each author's membership\n"+
			"by the governance records in the bundle, and each author's chain.\n"+
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
	if isBundle(pos[0]) {
		return verifyBundle(env, pos[0])
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
		if res.Signer != "" && (res.Signer != res.Author || res.Key != "in force") {
			fmt.Fprintf(tw, "signed by\t%s, %s\n", res.Signer, res.Key)
		}
		if d := res.Disclosed; d != nil {
			who := d.Author
			if d.AuthorName != "" {
				who = d.AuthorName + " (" + d.Author + ")"
			} else {
				who += " (a key this node has no profile for)"
			}
			fmt.Fprintf(tw, "discloses\t%s %s, seq %d in channel %s, %s\nsigned by\t%s: signature and CID check out\nmembership\t%s\n",
				d.Kind, d.CID, d.Seq, d.Channel, dateOf(d.Time), who, d.Membership)
		}
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

// isBundle reports whether path names a file that starts like a CAR
// (a header length, then a DAG-CBOR map).
func isBundle(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [16]byte
	n, _ := io.ReadFull(f, head[:])
	return n >= 2 && bytes.Contains(head[:n], []byte("roots")) || strings.HasSuffix(path, ".car")
}

// verifyBundle checks an evidence bundle offline.
func verifyBundle(env *Env, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := evidence.Verify(f)
	if err != nil {
		if env.JSON {
			_ = env.printJSON(map[string]any{"ok": false, "file": path, "error": err.Error()})
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s does not verify: %v", path, err)}
	}
	if env.JSON {
		type rec struct {
			CID      string `json:"cid"`
			Kind     string `json:"kind"`
			Author   string `json:"author"`
			Channel  string `json:"channel"`
			Seq      uint64 `json:"seq"`
			Time     string `json:"time"`
			Selected bool   `json:"selected"`
		}
		type channel struct {
			ID      string   `json:"id"`
			Name    string   `json:"name"`
			Admins  []string `json:"admins"`
			Members []string `json:"members"`
			Changes int      `json:"membershipChanges"`
		}
		out := struct {
			OK       bool      `json:"ok"`
			File     string    `json:"file"`
			Created  string    `json:"created"`
			Blocks   int       `json:"blocks"`
			Channels []channel `json:"channels"`
			Records  []rec     `json:"records"`
		}{OK: true, File: path, Created: rep.Created.UTC().Format(time.RFC3339), Blocks: rep.Blocks}
		for _, c := range rep.Channels {
			out.Channels = append(out.Channels, channel{c.ID.String(), c.Name, peerStrings(c.Admins), peerStrings(c.Members), c.Changes})
		}
		for _, r := range rep.Records {
			out.Records = append(out.Records, rec{r.CID.String(), r.Kind, r.Author.String(), r.Channel.String(), r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.Selected})
		}
		return env.printJSON(out)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tKIND\tAUTHOR\tSEQ\tCID")
	for _, r := range rep.Records {
		mark := " "
		if r.Selected {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", mark, r.Kind, short(r.Author.String()), r.Seq, r.CID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range rep.Channels {
		fmt.Fprintf(env.Stdout, "channel %q %s: admins %s; %d members; %d membership changes in the bundle\n",
			c.Name, c.ID, strings.Join(peerStrings(c.Admins), ", "), len(c.Members), c.Changes)
	}
	_, err = fmt.Fprintf(env.Stdout, "ok: %s: %d records (%d selected, *) in %d channels, made %s: every block's hash, signature, CID and schema checks out, "+
		"and each author is a member by the governance records in this bundle, in one chain. Trust it as far as you know the channels' admins above.\n",
		path, len(rep.Records), rep.Selected, len(rep.Channels), rep.Created.Format(time.RFC3339))
	return err
}

func peerStrings(ps []peer.ID) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
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
	s, err := protocol.OpenDelegated(envelope)
	if err == nil && s.Signer != s.Record.Author {
		// Another key than the company's first: only its key log says
		// whether that key signs for it.
		v.CID, v.Author, v.Signer = s.CID.String(), s.Record.Author.String(), s.Signer.String()
		v.Errors = append(v.Errors, fmt.Sprintf("signed by key %s, not by %s's first key; whether that key signs for it is in its key log: verify with the daemon running, or verify an evidence bundle (sangsaeng export --format car)", s.Signer, s.Record.Author))
		return v
	}
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
