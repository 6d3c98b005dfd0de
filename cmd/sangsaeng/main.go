// Command sangsaeng runs a sangsaeng node and talks to it.
//
// `sangsaeng daemon` runs the node; every other command is a thin client of
// the running daemon's local HTTP API (package node/api), except `init`,
// which creates a node's home, and `version`.
//
// Usage:
//
//	sangsaeng init [--name NAME] [--listen MULTIADDR]... [--api HOST:PORT] [--encryption-key-file PATH]
//	sangsaeng daemon [--log-level debug|info|warn|error]
//	sangsaeng id
//	sangsaeng peers
//	sangsaeng partners [ls | add PEER-ID MULTIADDR... [--name N] | rm PEER-ID]
//	sangsaeng channel create NAME [--member PEER-ID]... [--description D]
//	sangsaeng channel invite CHANNEL PEER-ID
//	sangsaeng channel join CODE
//	sangsaeng channel ls | show CHANNEL | remove-member CHANNEL PEER-ID
//	sangsaeng publish CHANNEL KIND [FILE|-] [--link REL=CID]...
//	sangsaeng get CID [--raw]
//	sangsaeng records [--channel C] [--kind K] [--author P] [--since T] [--limit N]
//	sangsaeng verify CID | FILE
//	sangsaeng watch [--channel C]
//	sangsaeng kinds [KIND]
//	sangsaeng profile set --name N [--brn 1234567890]
//	sangsaeng bench [--records N] [--payload BYTES] [--nodes N] [--rate R] [--phases LIST]
//	sangsaeng dashboard
//	sangsaeng version
//
// Global flags, accepted before or after the command and its arguments:
//
//	--home DIR         the node's home (default $SANGSAENG_HOME, else ~/.sangsaeng)
//	--api HOST:PORT    the daemon's API (default $SANGSAENG_API, else api.addr in the home, else 127.0.0.1:4802)
//	--json             print results as JSON, in the shapes of the API
//	--log-level LEVEL  debug, info, warn or error (the daemon's logs)
//	-h, --help         help for the command
//
// Results go to stdout, errors to stderr as one line `sangsaeng: <message>`.
// The exit status is 0 on success, 1 on failure and 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

func main() {
	os.Exit(run(context.Background(), NewEnv(), os.Args[1:]))
}

// command is one top-level command of the binary.
type command struct {
	name     string
	synopsis string // arguments, after the name
	short    string // one line for the command list
	run      func(ctx context.Context, env *Env, args []string) error
}

// commands lists the top-level commands in the order help shows them. It is
// filled in init to break the initialization cycle through cmdHelp.
var commands []command

func init() {
	commands = []command{
		{"init", "[--name NAME] [--listen MULTIADDR]... [--api HOST:PORT] [--encryption-key-file PATH]", "create a node: identity, config and data in the home", cmdInit},
		{"daemon", "[--log-level LEVEL]", "run the node", cmdDaemon},
		{"id", "", "the node's peer ID, name and addresses", cmdID},
		{"peers", "", "connected peers", cmdPeers},
		{"status", "", "the node's health: store, partners, sync lag, errors", cmdStatus},
		{"partners", "[ls | add PEER-ID MULTIADDR... [--name N] | rm PEER-ID]", "the address book of partner companies", cmdPartners},
		{"channel", "create | invite | join | ls | show | remove-member", "create, join and inspect channels", cmdChannel},
		{"publish", "CHANNEL KIND [FILE|-] [--link REL=CID]...", "sign and publish a record; prints its CID", cmdPublish},
		{"import", "csv|xlsx|epcis FILE --channel C [--kind K] [--map MAP.toml] [--dry-run]", "publish the documents of a CSV, Excel or EPCIS file", cmdImport},
		{"export", "--channel C --format jsonl|csv|xlsx|epcis|car [--kind K] [--since T] [-o FILE]", "write a channel's records as JSON Lines, CSV, Excel, EPCIS or a CAR evidence bundle", cmdExport},
		{"orders", "[--channel C] [--status open|late|done]", "the orders' lifecycles: shipped, received, open, late", cmdOrders},
		{"order", "DOC-ID [--channel C]", "one order's lifecycle, line by line", cmdOrder},
		{"trace", "CID [--up|--down] [--depth N] [--json|--dot]", "follow a record's links: what it was made from, what was made from it", cmdTrace},
		{"disclose", "CID --channel C [--note TEXT]", "pass a supplier's signed record to another channel, checkable by all", cmdDisclose},
		{"get", "CID [--raw]", "a record as JSON, or its signed envelope", cmdGet},
		{"records", "[--channel C] [--kind K] [--author P] [--since T] [--limit N]", "list records, newest first", cmdRecords},
		{"verify", "CID | FILE | BUNDLE.car", "check a record's signature, CID and chain position", cmdVerify},
		{"watch", "[--channel C]", "print records as they arrive", cmdWatch},
		{"kinds", "[KIND]", "list record kinds, or print one kind's JSON Schema", cmdKinds},
		{"profile", "set --name N [--brn NUMBER]", "set the company profile shared with partners", cmdProfile},
		{"receipts", "CHANNEL [--request]", "which partner holds this company's records up to which seq, signed", cmdReceipts},
		{"key", "[ls | rotate | add-device | revoke KEY --from-seq N]", "the company's keys: rotate, add a device, revoke", cmdKey},
		{"bench", "[--records N] [--payload BYTES] [--nodes N] [--rate R] [--phases LIST]", "measure throughput, latency, catch-up and memory on loopback", cmdBench},
		{"dashboard", "", "print the link to the daemon's web dashboard", cmdDashboard},
		{"version", "", "print the version", cmdVersion},
		{"help", "[COMMAND]", "help for a command", cmdHelp},
	}
}

// run runs the command line args (without the program name) and returns the
// exit status.
func run(ctx context.Context, env *Env, args []string) int {
	name, rest, help, err := splitCommand(args)
	if err == nil {
		switch {
		case name == "" && help:
			printUsage(env.Stdout)
			return 0
		case name == "":
			printUsage(env.Stderr)
			return 2
		}
		if c := lookup(name); c != nil {
			err = c.run(ctx, env, rest)
		} else {
			err = usageErrorf("", "unknown command %q (run `sangsaeng help` for the list)", name)
		}
	}
	return env.exit(err)
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "sangsaeng runs a sangsaeng node and talks to it.\n\nusage: sangsaeng COMMAND [ARGS] [FLAGS]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.short)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nglobal flags (before or after the command):\n")
	printFlags(w, globalFlagSet(&Globals{}), nil)
	fmt.Fprintf(w, "\nRun `sangsaeng COMMAND -h` for a command's arguments and flags.\n")
}

// cmdHelp prints the command list, or one command's help.
func cmdHelp(ctx context.Context, env *Env, args []string) error {
	f := env.flags("help [COMMAND]", "Print the list of commands, or the help of one.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 2); err != nil {
		return err
	}
	if len(pos) == 0 {
		printUsage(env.Stdout)
		return nil
	}
	c := lookup(pos[0])
	if c == nil || c.name == "help" {
		return usageErrorf(f.synopsis, "unknown command %q", pos[0])
	}
	return c.run(ctx, env, append(pos[1:], "-h"))
}

// exit reports err on stderr and returns the exit status for it.
func (e *Env) exit(err error) int {
	var ue *usageError
	var xe *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.Stderr, "sangsaeng: %s\n", ue.msg)
		if ue.synopsis != "" {
			fmt.Fprintf(e.Stderr, "usage: sangsaeng %s\n", ue.synopsis)
		}
		return 2
	case errors.As(err, &xe):
		if xe.msg != "" {
			fmt.Fprintf(e.Stderr, "sangsaeng: %s\n", xe.msg)
		}
		return xe.code
	}
	e.reportError(err)
	return 1
}

// exitError ends the program with a status and, when msg is not empty, a
// message, after the command has printed its result.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a command line that does not parse: exit status 2.
type usageError struct {
	synopsis string // the command's usage line, without "sangsaeng "
	msg      string
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(synopsis, format string, args ...any) error {
	return &usageError{synopsis: synopsis, msg: fmt.Sprintf(format, args...)}
}

// splitCommand finds the command word in args, skipping global flags (and
// their values) that come before it. It returns the word and args without
// it; help is set when -h or --help came before the word.
func splitCommand(args []string) (name string, rest []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], concat(args[:i], args[i+2:]), help, nil
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return a, concat(args[:i], args[i+1:]), help, nil
		}
		fname, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case fname == "h" || fname == "help":
			help = true
		case globalBool[fname]:
		case globalValue[fname]:
			if !hasValue {
				i++ // its value
			}
		default:
			return "", nil, help, usageErrorf("", "flag %s before the command: put a command's flags after it", a)
		}
	}
	return "", args, help, nil
}

// The global flags, by whether they take a value; splitCommand must know.
var (
	globalBool  = map[string]bool{"json": true}
	globalValue = map[string]bool{"home": true, "api": true, "log-level": true}
)

func concat(a, b []string) []string {
	return append(append([]string(nil), a...), b...)
}
