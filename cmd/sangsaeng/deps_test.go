package main

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/sangsaeng/sangsaeng"

// Only init and daemon may link the node; every other command is a client of
// the API. (tailscale tstest/deptest holds its CLI the same way.)
func TestCommandImports(t *testing.T) {
	daemonSide := map[string]bool{"init.go": true, "daemon.go": true, "bench_node.go": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{module + "/node", module + "/store"} {
				if (path == banned || strings.HasPrefix(path, banned+"/")) && path != module+"/node/api" && !daemonSide[name] {
					t.Errorf("%s imports %s: only init.go, daemon.go and bench_node.go may; use node/api", name, path)
				}
			}
		}
	}
}

// Imports point down: protocol imports nothing of ours, node/api only
// protocol.
func TestPackageDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	for pkg, allowed := range map[string][]string{
		module + "/protocol": nil,
		module + "/node/api": {module + "/protocol"},
	} {
		cmd := exec.Command(goTool, "list", "-deps", pkg)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == pkg || !(dep == module || strings.HasPrefix(dep, module+"/")) {
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || dep == a
			}
			if !ok {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
