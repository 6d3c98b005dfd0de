package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sangsaeng/sangsaeng/node"
)

// cmdDaemon runs the node until SIGINT or SIGTERM.
func cmdDaemon(ctx context.Context, env *Env, args []string) error {
	f := env.flags("daemon [--log-level debug|info|warn|error]",
		"Run the node: connect to partners, sync channels and serve the local API.\n"+
			"Logs go to stderr (as JSON with --json). SIGINT or SIGTERM stops it cleanly.\n"+
			"--api overrides the API address of the config.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	cfg, err := node.LoadConfig(env.home())
	if err != nil {
		return err
	}
	setMemoryLimit()
	if env.API != "" {
		cfg.API = env.API
	}
	level := env.LogLevel // checked by the flag
	if level == "" {
		level = cfg.LogLevel
	}
	slogLevel := slog.LevelInfo
	if level != "" {
		if err := slogLevel.UnmarshalText([]byte(level)); err != nil {
			return fmt.Errorf("log level %q in the config: want debug, info, warn or error", level)
		}
	}
	opts := &slog.HandlerOptions{Level: slogLevel}
	var h slog.Handler = slog.NewTextHandler(env.Stderr, opts)
	if env.JSON {
		h = slog.NewJSONHandler(env.Stderr, opts)
	}
	n, err := node.New(cfg, node.WithLogger(slog.New(h)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return err
	}
	return nil
}

// defaultMemoryLimit is the Go heap's soft limit in a node process. A
// node's live heap is some 30 to 50 MB (Badger's memtables and table
// builders most of it); the limit keeps a burst from growing the heap
// without bound. Measured with `sangsaeng bench` (three full runs each):
// at 80 MiB a member that caught up on 100,000 records peaked at 116 to
// 136 MB resident, against 134 to 143 MB at 96 MiB, with the same
// throughput and catch-up; at 64 MiB throughput fell by a fifth.
// GOMEMLIMIT in the environment overrides it.
const defaultMemoryLimit = 80 << 20

// setMemoryLimit applies defaultMemoryLimit unless GOMEMLIMIT is set.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}
