package docs

import (
	"flag"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/interlock-go/interlock/service"
)

var update = flag.Bool("update", false, "rewrite the generated parts of the reference")

const referenceFile = "reference/configuration.md"

// TestReferenceGenerated: the parts of the configuration reference between
// <!-- generated: NAME --> and <!-- end generated --> are what the code
// says today. go test ./docs -update rewrites them.
func TestReferenceGenerated(t *testing.T) {
	gens := map[string]func(*testing.T) string{
		"settings":    func(*testing.T) string { return service.Table() },
		"commands":    commandsReference,
		"options":     optionsReference,
		"helm-values": helmValuesReference,
	}
	raw, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := regexp.MustCompile(`<!-- generated: ([a-z-]+) -->\n`)
	const end = "<!-- end generated -->"
	var out strings.Builder
	seen := map[string]bool{}
	for {
		loc := start.FindStringSubmatchIndex(doc)
		if loc == nil {
			out.WriteString(doc)
			break
		}
		name := doc[loc[2]:loc[3]]
		stop := strings.Index(doc[loc[1]:], end)
		if stop < 0 {
			t.Fatalf("%s: generated part %q has no %q", referenceFile, name, end)
		}
		gen, ok := gens[name]
		if !ok {
			t.Fatalf("%s: no generator for %q", referenceFile, name)
		}
		seen[name] = true
		want := gen(t)
		if got := doc[loc[1] : loc[1]+stop]; got != want && !*update {
			t.Errorf("%s: the generated part %q is out of date with the code: run go test ./docs -update\n--- want:\n%s", referenceFile, name, want)
		}
		out.WriteString(doc[:loc[1]] + want + end)
		doc = doc[loc[1]+stop+len(end):]
	}
	for name := range gens {
		if !seen[name] {
			t.Errorf("%s has no generated part %q", referenceFile, name)
		}
	}
	if *update {
		if err := os.WriteFile(referenceFile, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// commandsReference is each command's usage, without the settings every
// command shares (they have a table of their own).
func commandsReference(t *testing.T) string {
	var b strings.Builder
	for _, p := range append(commandPaths(t), "") {
		if p == "" {
			continue
		}
		text := help(t, strings.Fields(p)...)
		if i := strings.Index(text, "\nsettings ("); i >= 0 {
			text = strings.TrimRight(text[:i], "\n") + "\n\nsettings: see the table above\n"
		}
		text = strings.ReplaceAll(text, filepath.Base(cli(t))+" ", "interlock ")
		fmt.Fprintf(&b, "### interlock %s\n\n```text\n%s```\n\n", p, strings.TrimLeft(text, "\n"))
	}
	return b.String()
}

// optionsPackages are the packages whose options the reference lists, and
// the option types of each.
var optionsPackages = []struct {
	dir   string
	types []string
}{
	{".", []string{"Option", "AggregateOption"}},
	{"projections", []string{"Option"}},
}

// optionsReference is a table per option type: each function returning it,
// with its doc comment.
func optionsReference(t *testing.T) string {
	var b strings.Builder
	for _, op := range optionsPackages {
		p := docPackage(t, op.dir)
		for _, typ := range op.types {
			fmt.Fprintf(&b, "#### %s.%s\n\n| option | what, and the default |\n| --- | --- |\n", p.Name, typ)
			for _, ty := range p.Types {
				if ty.Name != typ {
					continue
				}
				for _, f := range ty.Funcs {
					sig := strings.TrimPrefix(formatFunc(f.Decl), "func ")
					fmt.Fprintf(&b, "| `%s.%s` | %s |\n", p.Name, sig, oneLine(f.Doc))
				}
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestOptionsStateTheirDefault: every option's doc comment says what
// happens without it.
func TestOptionsStateTheirDefault(t *testing.T) {
	for _, op := range optionsPackages {
		p := docPackage(t, op.dir)
		for _, ty := range p.Types {
			if !slices.Contains(op.types, ty.Name) {
				continue
			}
			for _, f := range ty.Funcs {
				if !strings.Contains(strings.ToLower(f.Doc), "default") {
					t.Errorf("%s.%s: the doc comment does not state the default", p.Name, f.Name)
				}
			}
		}
	}
}

func formatFunc(d *ast.FuncDecl) string {
	var params []string
	for _, f := range d.Type.Params.List {
		typ := exprString(f.Type)
		if len(f.Names) == 0 {
			params = append(params, typ)
		}
		for _, n := range f.Names {
			params = append(params, n.Name+" "+typ)
		}
	}
	tparams := ""
	if d.Type.TypeParams != nil {
		var tp []string
		for _, f := range d.Type.TypeParams.List {
			for _, n := range f.Names {
				tp = append(tp, n.Name+" "+exprString(f.Type))
			}
		}
		tparams = "[" + strings.Join(tp, ", ") + "]"
	}
	return "func " + d.Name.Name + tparams + "(" + strings.Join(params, ", ") + ")"
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.Ellipsis:
		return "..." + exprString(e.Elt)
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	case *ast.FuncType:
		return "func(…)"
	case *ast.IndexExpr:
		return exprString(e.X) + "[" + exprString(e.Index) + "]"
	case *ast.MapType:
		return "map[" + exprString(e.Key) + "]" + exprString(e.Value)
	case *ast.InterfaceType:
		return "interface{…}"
	}
	return "…"
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", `\|`)
}

// helmValuesReference is every value of the chart, with its default and
// the comment above it in values.yaml.
func helmValuesReference(t *testing.T) string {
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "interlock", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(raw, &n); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| value | default | what |\n| --- | --- | --- |\n")
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			comment := strings.TrimSpace(k.HeadComment)
			// The file's own header is the first key's head comment: keep
			// only the paragraph next to the key.
			if j := strings.LastIndex(comment, "\n\n"); j >= 0 {
				comment = comment[j+2:]
			}
			comment = strings.TrimSpace(regexp.MustCompile(`(?m)^#\s?`).ReplaceAllString(comment, ""))
			if comment == "" {
				t.Errorf("values.yaml: %s has no comment", key)
			}
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				fmt.Fprintf(&b, "| `%s` | | %s |\n", key, oneLine(comment))
				walk(key+".", v)
				continue
			}
			def, err := yaml.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			d := oneLine(string(def))
			if v.Kind == yaml.SequenceNode && len(v.Content) > 0 {
				var items []string
				for _, it := range v.Content {
					items = append(items, it.Value)
				}
				d = "[" + strings.Join(items, ", ") + "]"
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", key, d, oneLine(comment))
		}
	}
	walk("", n.Content[0])
	return b.String()
}

// publicDirs are the folders of the packages users import: everything but
// internal/, cmd/, the documentation's own folders and testdata.
func publicDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		name := d.Name()
		if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "internal" || name == "cmd" || name == "deploy" || name == "scripts") {
			return filepath.SkipDir
		}
		if rel == "docs" {
			return nil // the tutorial's packages below are checked
		}
		files, _ := filepath.Glob(filepath.Join(p, "*.go"))
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				dirs = append(dirs, rel)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// docPackage parses the package in dir (from the repository root), tests
// excluded.
func docPackage(t *testing.T, dir string) *doc.Package {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, filepath.Join(root, dir), func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range pkgs {
		for _, f := range p.Files {
			files = append(files, f)
		}
	}
	p, err := doc.NewFromFiles(fset, files, "github.com/interlock-go/interlock/"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExportedNamesDocumented: every package users import has a package
// comment, and every exported name in it a doc comment, as pkg.go.dev
// shows them.
func TestExportedNamesDocumented(t *testing.T) {
	var missing []string
	for _, dir := range publicDirs(t) {
		p := docPackage(t, dir)
		if p.Name == "main" {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			missing = append(missing, dir+": package comment")
		}
		values := func(vs []*doc.Value) {
			for _, v := range vs {
				if v.Doc != "" {
					continue
				}
				for _, s := range v.Decl.Specs {
					vs := s.(*ast.ValueSpec)
					if vs.Doc == nil && vs.Comment == nil {
						for _, n := range vs.Names {
							if n.IsExported() {
								missing = append(missing, dir+": "+n.Name)
							}
						}
					}
				}
			}
		}
		funcs := func(prefix string, fs []*doc.Func) {
			for _, f := range fs {
				if f.Doc == "" {
					missing = append(missing, dir+": "+prefix+f.Name)
				}
			}
		}
		values(p.Consts)
		values(p.Vars)
		funcs("", p.Funcs)
		for _, ty := range p.Types {
			if ty.Doc == "" {
				missing = append(missing, dir+": type "+ty.Name)
			}
			values(ty.Consts)
			values(ty.Vars)
			funcs("", ty.Funcs)
			funcs(ty.Name+".", ty.Methods)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("no doc comment: %s", m)
	}
}

// TestEnvironmentDocumented: every INTERLOCK_* variable the code or the
// scripts name is in the configuration reference.
func TestEnvironmentDocumented(t *testing.T) {
	raw, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	ref := string(raw)
	name := regexp.MustCompile(`\bINTERLOCK_[A-Z0-9_]*[A-Z0-9]\b`)
	found := map[string]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") && n != ".ci" || n == "testdata" || n == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		// What a user or a developer sets: the code (tests aside: a test's
		// own switches are its business) and the scripts.
		isCode := strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go")
		if !isCode && !strings.HasSuffix(p, ".sh") && filepath.Base(p) != "run" {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllString(string(raw), -1) {
			if _, ok := found[m]; !ok {
				found[m] = p
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, "_FILE") && strings.Contains(ref, "`"+strings.TrimSuffix(n, "_FILE")+"`") {
			continue // a secret's file variant, documented with it
		}
		if !strings.Contains(ref, "`"+n+"`") {
			t.Errorf("%s (read in %s) is not in %s", n, found[n], referenceFile)
		}
	}
	t.Logf("%d variables", len(names))
}
