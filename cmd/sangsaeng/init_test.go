package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "node")
	env := &Env{Stdin: strings.NewReader(""), Getenv: func(string) string { return "" }}
	var out, errb strings.Builder
	env.Stdout, env.Stderr = &out, &errb
	if code := run(t.Context(), env, []string{"init", "--home", home, "--name", "Hanbit Motors", "--api", "127.0.0.1:4999"}); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errb.String())
	}
	contains(t, "init", out.String(), "peer ID  12D3KooW", "home     "+home, "sangsaeng daemon --home "+home)
	if _, err := os.Stat(filepath.Join(home, "identity.key")); err != nil {
		t.Errorf("no identity: %v", err)
	}
	cfg, _ := os.ReadFile(filepath.Join(home, "config.toml"))
	contains(t, "config.toml", string(cfg), "Hanbit Motors", "127.0.0.1:4999")

	// A second init refuses to overwrite the identity.
	key, _ := os.ReadFile(filepath.Join(home, "identity.key"))
	out.Reset()
	env.Globals = Globals{}
	if code := run(t.Context(), env, []string{"init", "--home", home}); code != 1 {
		t.Errorf("second init: exit %d, want 1", code)
	}
	contains(t, "second init", errb.String(), "sangsaeng: a node already exists in "+home)
	if again, _ := os.ReadFile(filepath.Join(home, "identity.key")); string(again) != string(key) {
		t.Error("the identity was overwritten")
	}

	// --json prints the ID and the home.
	home2 := filepath.Join(t.TempDir(), "node2")
	out.Reset()
	env.Globals = Globals{}
	if code := run(t.Context(), env, []string{"--json", "init", "--home", home2}); code != 0 {
		t.Fatalf("init --json: exit %d: %s", code, errb.String())
	}
	var v struct{ ID, Name, Home string }
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil || !strings.HasPrefix(v.ID, "12D3KooW") || v.Home != home2 {
		t.Errorf("init --json: %v %+v\n%s", err, v, out.String())
	}
}

func TestDaemonWithoutNode(t *testing.T) {
	env := &Env{Stdin: strings.NewReader(""), Getenv: func(string) string { return "" }}
	var out, errb strings.Builder
	env.Stdout, env.Stderr = &out, &errb
	home := filepath.Join(t.TempDir(), "none")
	if code := run(t.Context(), env, []string{"daemon", "--home", home}); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	contains(t, "daemon", errb.String(), "sangsaeng: no node in "+home, "sangsaeng init")
	if code := run(t.Context(), env, []string{"daemon", "--log-level", "loud"}); code != 2 {
		t.Errorf("--log-level loud: exit %d, want 2", code)
	}
}
