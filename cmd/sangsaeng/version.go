package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = ""

// cmdVersion prints the version of the binary.
func cmdVersion(ctx context.Context, env *Env, args []string) error {
	f := env.flags("version", "Print the version of sangsaeng and the Go it was built with.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	v := struct {
		Version string `json:"version"`
		Commit  string `json:"commit,omitempty"`
		Go      string `json:"go"`
	}{Version: version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Commit = s.Value
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	if env.JSON {
		return env.printJSON(v)
	}
	fmt.Fprintf(env.Stdout, "sangsaeng %s", v.Version)
	if v.Commit != "" {
		fmt.Fprintf(env.Stdout, " (%.12s)", v.Commit)
	}
	fmt.Fprintf(env.Stdout, " %s\n", v.Go)
	return nil
}
