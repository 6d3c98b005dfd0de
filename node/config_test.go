package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestConfigOverridesStayOut: a profile change writes the new profile into
// config.toml and keeps the file's own values; overrides from the
// environment and flags never reach it, and an operator's edit of the file
// since the start is kept. Concurrent changes and reads are serialised (run
// with -race).
func TestConfigOverridesStayOut(t *testing.T) {
	home := t.TempDir()
	if _, err := Init(home, InitOptions{
		Name:   "FileName",
		Listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		API:    "127.0.0.1:0",
	}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SANGSAENG_NAME", "EnvName")
	t.Setenv("SANGSAENG_LOG_LEVEL", "debug")
	t.Setenv("SANGSAENG_LISTEN", "/ip4/127.0.0.1/tcp/0")
	cfg, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "EnvName" || cfg.LogLevel != "debug" || len(cfg.Listen) != 1 {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	cfg.API = "localhost:0" // as --api does
	cfg.MDNS = false
	n, err := New(cfg, WithLogger(slog.New(slog.NewTextHandler(testLogWriter{t}, nil))), WithoutNATPortMap())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	// The operator edits the file while the node runs.
	path := filepath.Join(home, ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(raw), "author_quota = 20000", "author_quota = 77", 1)
	if edited == string(raw) {
		t.Fatalf("config.toml has no author_quota = 20000:\n%s", raw)
	}
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}

	h := newAPIHarness(t, n)
	var wg sync.WaitGroup
	names := map[string]bool{}
	for i := range 4 {
		name := fmt.Sprintf("Hanbit %d", i)
		names[name] = true
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := n.SetProfile(context.Background(), name, ""); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if status, _, _ := h.do(t, "GET", "/v1/id", nil); status != http.StatusOK {
				t.Errorf("GET /v1/id: %d", status)
			}
		}()
	}
	wg.Wait()

	var file Config
	if _, err := toml.DecodeFile(path, &file); err != nil {
		t.Fatal(err)
	}
	name, _ := n.profile()
	if !names[file.Name] || file.Name != name {
		t.Errorf("config.toml name %q, node's %q: want the same, one of the names set", file.Name, name)
	}
	if file.LogLevel != "info" || len(file.Listen) != 2 || file.API != "127.0.0.1:0" || !file.MDNS || file.AuthorQuota != 77 {
		t.Errorf("config.toml lost its own values or took overrides:\n%s", mustRead(t, path))
	}
	if n.cfg.LogLevel != "debug" || len(n.cfg.Listen) != 1 || n.cfg.API != "localhost:0" {
		t.Errorf("the node's effective config lost its overrides: %+v", n.cfg)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRelayDefaults: a node is no relay unless its operator says so
// (relay.enabled off by default), with the limits it would apply when on,
// and Validate refuses a limit of 0, which would make a relay that serves
// nobody.
func TestRelayDefaults(t *testing.T) {
	def := DefaultConfig().Relay
	if def.Enabled || def.MaxReservations != 128 || def.MaxCircuits != 16 || len(def.Use) != 0 {
		t.Fatalf("DefaultConfig().Relay = %+v, want off, max_reservations 128, max_circuits 16, no relay.use", def)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the default config: %v", err)
	}
	for _, tc := range []struct {
		name string // the field Validate must name, with its value
		edit func(*RelayConfig)
	}{
		{"max_reservations (0)", func(r *RelayConfig) { r.MaxReservations = 0 }},
		{"max_circuits (0)", func(r *RelayConfig) { r.MaxCircuits = 0 }},
		{"max_circuits (-1)", func(r *RelayConfig) { r.Enabled = true; r.MaxCircuits = -1 }},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg.Relay)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "relay."+tc.name) {
			t.Errorf("Validate with relay %+v: %v, want an error naming relay.%s", cfg.Relay, err, tc.name)
		}
	}
}
