package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/ipfs/go-cid"

	"github.com/sangsaeng/sangsaeng/node/api"
	"github.com/sangsaeng/sangsaeng/protocol"
)

// cmdFlags is a command's flag set: its own flags plus the global ones.
type cmdFlags struct {
	*flag.FlagSet
	env      *Env
	synopsis string // usage line, without "sangsaeng "
	desc     string // what the command does, for -h
}

// flags returns a flag set for a command with the global flags bound to env.
func (e *Env) flags(synopsis, desc string) *cmdFlags {
	name, _, _ := strings.Cut(synopsis, " [")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addGlobalFlags(fs, &e.Globals)
	return &cmdFlags{FlagSet: fs, env: e, synopsis: synopsis, desc: desc}
}

func addGlobalFlags(fs *flag.FlagSet, g *Globals) {
	fs.StringVar(&g.Home, "home", g.Home, "the node's home `DIR` (default $SANGSAENG_HOME, else ~/.sangsaeng)")
	fs.StringVar(&g.API, "api", g.API, "the daemon's API at `HOST:PORT` (default $SANGSAENG_API, else api.addr in the home, else "+api.DefaultAddr+")")
	fs.BoolVar(&g.JSON, "json", g.JSON, "print results as JSON")
	fs.Var((*logLevel)(&g.LogLevel), "log-level", "log `LEVEL`: debug, info, warn or error")
	fs.BoolVar(&g.Help, "h", g.Help, "help for the command")
	fs.BoolVar(&g.Help, "help", g.Help, "help for the command")
}

// globalFlagSet returns a flag set of the global flags alone, for help.
func globalFlagSet(g *Globals) *flag.FlagSet {
	fs := flag.NewFlagSet("sangsaeng", flag.ContinueOnError)
	addGlobalFlags(fs, g)
	return fs
}

// parse parses args, in which flags and positional arguments may come in any
// order; everything after "--" is positional. It returns the positional
// arguments. With -h it prints the command's help on stdout and returns
// flag.ErrHelp.
func (f *cmdFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.help()
				return nil, err
			}
			return nil, usageErrorf(f.synopsis, "%s", flagMessage(err))
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if f.env.Help {
		f.help()
		return nil, flag.ErrHelp
	}
	return pos, nil
}

// flagMessage rewords an error of the flag package, which spells flags
// with one dash, in this command's spelling.
func flagMessage(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag --" + name
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "flag --" + name + " needs a value"
	}
	return strings.Replace(msg, " for flag -", " for --", 1)
}

// nargs checks the number of positional arguments: at least lo, at most hi
// (no limit when hi < 0).
func (f *cmdFlags) nargs(pos []string, lo, hi int) error {
	switch {
	case len(pos) < lo:
		return usageErrorf(f.synopsis, "missing arguments")
	case hi >= 0 && len(pos) > hi:
		return usageErrorf(f.synopsis, "unexpected argument %q", pos[hi])
	}
	return nil
}

// usageErrorf returns a usage error of this command.
func (f *cmdFlags) usageErrorf(format string, args ...any) error {
	return usageErrorf(f.synopsis, format, args...)
}

// help prints the command's usage, description and flags on stdout.
func (f *cmdFlags) help() {
	w := f.env.Stdout
	fmt.Fprintf(w, "usage: sangsaeng %s\n\n%s\n", f.synopsis, f.desc)
	global := globalFlagSet(&Globals{})
	var own []*flag.Flag
	f.VisitAll(func(fl *flag.Flag) {
		if global.Lookup(fl.Name) == nil {
			own = append(own, fl)
		}
	})
	if len(own) > 0 {
		fmt.Fprintf(w, "\nflags:\n")
		printFlags(w, f.FlagSet, own)
	}
	fmt.Fprintf(w, "\nglobal flags:\n")
	printFlags(w, global, nil)
}

// printFlags lists flags (all of fs when nil) with their usage, GNU style.
func printFlags(w io.Writer, fs *flag.FlagSet, flags []*flag.Flag) {
	if flags == nil {
		fs.VisitAll(func(fl *flag.Flag) { flags = append(flags, fl) })
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, fl := range flags {
		if fl.Name == "help" {
			continue // shown with -h
		}
		name, usage := flag.UnquoteUsage(fl)
		head := "--" + fl.Name
		if fl.Name == "h" {
			head = "-h, --help"
		}
		if name != "" {
			head += " " + name
		}
		if _, ok := fl.Value.(interface{ repeatable() }); ok {
			usage += " (repeatable)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", head, usage)
	}
	tw.Flush()
}

// logLevel is a --log-level value.
type logLevel string

func (l *logLevel) String() string { return string(*l) }

func (l *logLevel) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		*l = logLevel(strings.ToLower(s))
		return nil
	}
	return fmt.Errorf("want debug, info, warn or error")
}

// stringList is a flag that may be given more than once.
type stringList []string

func (*stringList) repeatable() {}

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// linkList is --link REL=CID, given any number of times.
type linkList []protocol.JSONLink

// relPattern is what protocol accepts as a link's rel.
var relPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,63}$`)

func (*linkList) repeatable() {}

func (l *linkList) String() string {
	parts := make([]string, len(*l))
	for i, x := range *l {
		parts[i] = x.Rel + "=" + x.CID
	}
	return strings.Join(parts, ",")
}

func (l *linkList) Set(v string) error {
	link, err := parseLink(v)
	if err != nil {
		return err
	}
	*l = append(*l, link)
	return nil
}

// parseLink reads REL=CID.
func parseLink(v string) (protocol.JSONLink, error) {
	rel, c, ok := strings.Cut(v, "=")
	if !ok {
		return protocol.JSONLink{}, fmt.Errorf("want REL=CID, like fulfils=bafy…")
	}
	if !relPattern.MatchString(rel) {
		return protocol.JSONLink{}, fmt.Errorf("rel %q: want lower-case letters, digits and dashes, like fulfils or supersedes", rel)
	}
	if _, err := cid.Decode(c); err != nil {
		return protocol.JSONLink{}, fmt.Errorf("%q is not a CID", c)
	}
	return protocol.JSONLink{Rel: rel, CID: c}, nil
}

// groupHelp prints the help of a command with subcommands on stdout and
// returns flag.ErrHelp.
func (e *Env) groupHelp(synopsis, desc string, subs [][2]string) error {
	w := e.Stdout
	fmt.Fprintf(w, "usage: sangsaeng %s\n\n%s\n\ncommands:\n", synopsis, desc)
	group, _, _ := strings.Cut(synopsis, " ")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range subs {
		fmt.Fprintf(tw, "  %s %s\t%s\n", group, s[0], s[1])
	}
	tw.Flush()
	fmt.Fprintf(w, "\nglobal flags:\n")
	printFlags(w, globalFlagSet(&Globals{}), nil)
	return flag.ErrHelp
}
