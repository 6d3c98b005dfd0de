package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSlowTestsNamedInCI: every test that skips or shrinks under -short
// (it calls testing.Short or buildBinary) is run in full by .ci/run, by
// name, and every test .ci/run names exists. go test -short ./... is the
// README's test command; without this check a new slow test would never
// run in CI.
func TestSlowTestsNamedInCI(t *testing.T) {
	root := filepath.Join("..", "..")
	script, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	named := map[string][]string{} // package dir ("./node") -> tests
	line := regexp.MustCompile(`(?m)^slow (\S+) '([^']*)'$`)
	for _, m := range line.FindAllStringSubmatch(string(script), -1) {
		named[m[1]] = append(named[m[1]], strings.Split(m[2], "|")...)
	}
	if len(named) == 0 {
		t.Fatal(".ci/run names no slow tests (lines: slow ./pkg 'TestA|TestB')")
	}

	found := map[string][]string{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(rel)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Body == nil {
				continue
			}
			if callsSlowGuard(fn.Body) {
				found[pkg] = append(found[pkg], fn.Name.Name)
			}
			if slices.Contains(named[pkg], fn.Name.Name) {
				found[pkg+" (exists)"] = append(found[pkg+" (exists)"], fn.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg, tests := range found {
		if strings.HasSuffix(pkg, " (exists)") {
			continue
		}
		for _, name := range tests {
			if !slices.Contains(named[pkg], name) {
				t.Errorf("%s.%s skips or shrinks under -short but .ci/run does not run it: add it to the slow %s line", pkg, name, pkg)
			}
		}
	}
	for pkg, tests := range named {
		for _, name := range tests {
			if !slices.Contains(found[pkg+" (exists)"], name) {
				t.Errorf(".ci/run names %s in %s, but there is no such test", name, pkg)
			}
		}
	}
}

// callsSlowGuard reports whether body calls testing.Short or buildBinary.
func callsSlowGuard(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return !found
		}
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			found = found || fn.Name == "buildBinary"
		case *ast.SelectorExpr:
			if x, ok := fn.X.(*ast.Ident); ok && x.Name == "testing" && fn.Sel.Name == "Short" {
				found = true
			}
		}
		return !found
	})
	return found
}
