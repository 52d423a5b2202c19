package store_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/rekeyd/rekey/store"
)

// declaredKinds parses events.go and returns each EventKind constant's value
// and name, so the list cannot drift from the declaration.
func declaredKinds(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "EventKind" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				if other, dup := kinds[v]; dup {
					t.Errorf("%s and %s both declare %q", other, name.Name, v)
				}
				kinds[v] = name.Name
			}
		}
	}
	if len(kinds) == 0 {
		t.Fatal("events.go declares no EventKind constant")
	}
	return kinds
}

func TestEventKindsListsEveryDeclaredKind(t *testing.T) {
	kinds := declaredKinds(t)
	for v, name := range kinds {
		if !slices.Contains(store.EventKinds, store.EventKind(v)) {
			t.Errorf("store.EventKinds lacks %s", name)
		}
	}
	if len(store.EventKinds) != len(kinds) {
		t.Errorf("store.EventKinds has %d entries for %d declared kinds", len(store.EventKinds), len(kinds))
	}
}

// Every event kind is spelled once, in events.go: any other Go file of the
// module (tests included) that holds a kind as a string literal fails.
func TestNoEventKindLiteralOutsideItsDeclaration(t *testing.T) {
	kinds := declaredKinds(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	decl, err := filepath.Abs("events.go")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name()[0] == '.' || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if filepath.Ext(path) != ".go" || path == decl {
			return nil
		}
		files++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if v, err := strconv.Unquote(lit.Value); err == nil {
				if name, ok := kinds[v]; ok {
					rel, _ := filepath.Rel(root, fset.Position(lit.Pos()).Filename)
					t.Errorf("%s:%d: event kind %q spelled out; use store.%s", rel, fset.Position(lit.Pos()).Line, v, name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("walked %d Go files under %s; expected the whole module", files, root)
	}
}
