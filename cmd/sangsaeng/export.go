package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sangsaeng/sangsaeng/interchange"
	"github.com/sangsaeng/sangsaeng/node/api"
)

// cmdExport writes a channel's records as JSON Lines, CSV or XLSX.
func cmdExport(ctx context.Context, env *Env, args []string) error {
	f := env.flags("export --channel C --format jsonl|csv|xlsx|epcis|car [--kind K] [--since T] [--cid CID [--with-links]] [--lang ko|en] [--encoding utf-8|cp949] [--id-base URL] [-o FILE]",
		"Write a channel's records (내보내기), in the order the node stored them: as JSON Lines,\n"+
			"or one kind's documents as a CSV or Excel table that `sangsaeng import` reads back\n"+
			"into the same documents (the latest version of each). CSV is UTF-8 with a BOM, so\n"+
			"that Excel opens it right, or CP949 with --encoding cp949; headers are Korean\n"+
			"unless --lang en. Kinds for tables: "+strings.Join(interchange.Kinds(), ", ")+".\n"+
			"--format epcis writes a GS1 EPCIS 2.0 JSON-LD document: despatch-advices, receipts,\n"+
			"production reports, inspections and stock counts as events, each with its record's\n"+
			"CID (sangsaeng:record) and identifiers under --id-base (https://id.example.co.kr).\n"+
			"--format car writes an evidence bundle (CARv1): the records, the governance records\n"+
			"that make their authors members, and a root that lists them; --cid takes one record,\n"+
			"--with-links everything it links to in the channel as well (--cross-channel: in the\n"+
			"node's other channels too, whose records and members then go with the bundle).\n"+
			"`sangsaeng verify FILE.car` checks it offline, anywhere.")
	channel := f.String("channel", "", "the `CHANNEL` (ID or name)")
	format := f.String("format", "jsonl", "`jsonl, csv, xlsx, epcis or car`")
	oneCID := f.String("cid", "", "car: bundle only the record `CID`")
	withLinks := f.Bool("with-links", false, "car: with --cid, add every record it links to in the channel, and theirs")
	cross := f.Bool("cross-channel", false, "car: with --with-links, follow links into the node's other channels too (their records and members go with the bundle)")
	idBase := f.String("id-base", "", "EPCIS: the root `URL` of the company's identifiers (default https://id.invalid/PEER-ID)")
	kind := f.String("kind", "", "only records of `KIND` (required for csv and xlsx)")
	since := f.String("since", "", "only records from `TIME` on (2026-11-20 or RFC 3339)")
	lang := f.String("lang", "ko", "table headers in `ko or en`")
	encoding := f.String("encoding", "utf-8", "CSV: `utf-8 or cp949`")
	out := f.String("o", "", "write to `FILE` instead of standard output")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	if *channel == "" {
		return f.usageErrorf("--channel is required")
	}
	if (*format == "csv" || *format == "xlsx") && *kind == "" {
		return f.usageErrorf("--kind is required for a %s table: one of %s", *format, strings.Join(interchange.Kinds(), ", "))
	}
	if (*format == "xlsx" || *format == "car") && *out == "" {
		if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && env.Stdout == os.Stdout {
			return f.usageErrorf("an %s export is a binary file: give -o FILE", *format)
		}
	}
	c, err := env.Client()
	if err != nil {
		return err
	}
	if (*withLinks || *cross) && *oneCID == "" {
		return f.usageErrorf("--with-links and --cross-channel go with --cid")
	}
	if *oneCID != "" && *format != "car" {
		return f.usageErrorf("--cid goes with --format car")
	}
	if *cross && !*withLinks {
		return f.usageErrorf("--cross-channel goes with --with-links")
	}
	o := api.ExportOptions{Format: *format, Kind: *kind, Since: *since, Lang: *lang, Encoding: *encoding, IDBase: *idBase, CID: *oneCID, WithLinks: *withLinks, CrossChannel: *cross}
	if *out == "" {
		return c.Export(ctx, *channel, o, env.Stdout)
	}
	// Written whole or not at all.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := c.Export(ctx, *channel, o, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	if !env.JSON {
		_, err = fmt.Fprintf(env.Stderr, "wrote %s\n", *out)
	}
	return err
}
