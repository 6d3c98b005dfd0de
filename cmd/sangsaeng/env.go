package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sangsaeng/sangsaeng/node/api"
)

// Env is what a command runs with: its streams, the global flags and the way
// to reach the daemon. Tests build one around buffers and a test server.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (SANGSAENG_HOME, SANGSAENG_API).
	Getenv func(string) string
	// NewClient returns a client of the daemon of the node in home, at addr,
	// or, when addr is empty, where the home says. Default: api.FromHome.
	NewClient func(home, addr string) (*api.Client, error)

	// Globals are set by the command's flag parsing.
	Globals

	client *api.Client // the last client made, for error messages
}

// Globals are the flags every command takes.
type Globals struct {
	// Home is --home; empty means $SANGSAENG_HOME, else ~/.sangsaeng.
	Home string
	// API is --api; empty means $SANGSAENG_API, else what the home says.
	API string
	// JSON is --json.
	JSON bool
	// LogLevel is --log-level; empty means the configured level.
	LogLevel string
	// Help is -h or --help.
	Help bool
}

// NewEnv returns the environment of the process.
func NewEnv() *Env {
	return &Env{
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		NewClient: api.FromHome,
	}
}

// home returns the node's home directory.
func (e *Env) home() string {
	if e.Home != "" {
		return e.Home
	}
	if h := e.Getenv("SANGSAENG_HOME"); h != "" {
		return h
	}
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".sangsaeng")
	}
	return ".sangsaeng"
}

// apiAddr returns the API address the user named, or "" to let the home say.
func (e *Env) apiAddr() string {
	if e.API != "" {
		return e.API
	}
	return e.Getenv("SANGSAENG_API")
}

// Client returns a client of the daemon.
func (e *Env) Client() (*api.Client, error) {
	c, err := e.NewClient(e.home(), e.apiAddr())
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

// printJSON writes v to stdout as indented JSON.
func (e *Env) printJSON(v any) error {
	enc := json.NewEncoder(e.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// reportError prints an error that is not a usage error on stderr.
func (e *Env) reportError(err error) {
	var ae *api.Error
	if errors.As(err, &ae) && e.JSON {
		b, _ := json.Marshal(ae)
		fmt.Fprintf(e.Stderr, "%s\n", b)
		return
	}
	msg := err.Error()
	switch {
	case errors.Is(err, api.ErrNoDaemon) && e.client != nil:
		start := "sangsaeng daemon"
		if e.Home != "" {
			start += " --home " + shellQuote(e.Home)
		}
		msg = fmt.Sprintf("no daemon answers at %s: start it with `%s`", e.client.Addr(), start)
	case errors.Is(err, api.ErrUnauthorized):
		msg += fmt.Sprintf(" (the daemon did not accept the token in %s; is --home right?)", filepath.Join(e.home(), api.TokenFile))
	}
	fmt.Fprintf(e.Stderr, "sangsaeng: %s\n", msg)
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./~:=+@%,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// short abbreviates a peer ID or CID for a table column: its last characters
// tell IDs apart, while the first are the same for every one.
func short(s string) string {
	const keep = 10
	if len(s) <= keep+2 {
		return s
	}
	return "…" + s[len(s)-keep:]
}

// orEmpty returns s, or an empty slice instead of nil, so that --json prints
// [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// dash returns s, or "-" when it is empty, for a table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
