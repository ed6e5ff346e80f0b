package docs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// root is the repository's root, from this package's folder.
const root = ".."

// page is a Markdown file of the repository.
type page struct {
	path  string // from the repository root, slash-separated
	lines []string
}

// prose yields the page's lines outside code blocks, with their index.
func (pg *page) prose() iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		inFence := false
		for i, l := range pg.lines {
			if fence.MatchString(l) {
				inFence = !inFence
				continue
			}
			if !inFence && !yield(i, l) {
				return
			}
		}
	}
}

// block is a fenced code block of a page.
type block struct {
	page   *page
	line   int    // of the opening fence, 1-based
	lang   string // the fence's info string, first word
	marker string // the <!-- code: path --> right above the fence, if any
	body   []string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.page.path, b.line) }

var (
	pagesOnce sync.Once
	allPages  []*page
)

// pages returns every Markdown file of the repository but DESIGN.md, the
// design card, whose sketch is explicitly not the API.
func pages(t *testing.T) []*page {
	t.Helper()
	pagesOnce.Do(func() {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
					return filepath.SkipDir
				}
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			if !strings.HasSuffix(name, ".md") || rel == "DESIGN.md" {
				return nil
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			allPages = append(allPages, &page{path: rel, lines: strings.Split(string(raw), "\n")})
			return nil
		})
		if err != nil {
			panic(err)
		}
	})
	if len(allPages) == 0 {
		t.Fatal("no Markdown files found")
	}
	return allPages
}

var (
	fence  = regexp.MustCompile("^(\\s*)(```+|~~~+)\\s*([^`\\s]*)")
	marker = regexp.MustCompile(`^\s*<!--\s*code:\s*(\S+)\s*-->\s*$`)
)

// blocks returns the fenced code blocks of every page, their lines with the
// fence's indentation removed.
func blocks(t *testing.T) []block {
	t.Helper()
	var out []block
	for _, pg := range pages(t) {
		for i := 0; i < len(pg.lines); i++ {
			m := fence.FindStringSubmatch(pg.lines[i])
			if m == nil {
				continue
			}
			b := block{page: pg, line: i + 1, lang: m[3]}
			if i > 0 {
				if mm := marker.FindStringSubmatch(pg.lines[i-1]); mm != nil {
					b.marker = mm[1]
				}
			}
			indent, closing := m[1], m[2]
			for i++; i < len(pg.lines); i++ {
				l := pg.lines[i]
				if strings.HasPrefix(strings.TrimSpace(l), closing) && strings.Trim(strings.TrimSpace(l), closing[:1]) == "" {
					break
				}
				b.body = append(b.body, strings.TrimPrefix(l, indent))
			}
			if i == len(pg.lines) {
				t.Errorf("%s: the code block is never closed", b)
			}
			out = append(out, b)
		}
	}
	return out
}

// TestCodeMarkers: a block marked <!-- code: path --> appears, line for
// line (trailing space aside), in that file, so an excerpt of real code
// cannot drift from it.
func TestCodeMarkers(t *testing.T) {
	n := 0
	for _, b := range blocks(t) {
		if b.marker == "" {
			continue
		}
		n++
		raw, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(b.marker)))
		if err != nil {
			t.Errorf("%s: the block's file: %v", b, err)
			continue
		}
		if !containsLines(strings.Split(string(raw), "\n"), b.body) {
			t.Errorf("%s: the block is not a verbatim excerpt of %s (trailing spaces aside): copy it again from the file", b, b.marker)
		}
	}
	t.Logf("%d excerpts checked", n)
}

func containsLines(file, want []string) bool {
	trim := func(s string) string { return strings.TrimRight(s, " \t\r") }
	for len(want) > 0 && trim(want[len(want)-1]) == "" {
		want = want[:len(want)-1]
	}
	if len(want) == 0 {
		return true
	}
	// The excerpt may be indented less than the file (a function's body
	// shown on its own): the difference is the first line's.
	first := trim(want[0])
	for i := 0; i+len(want) <= len(file); i++ {
		l := trim(file[i])
		if !strings.HasSuffix(l, first) || strings.TrimLeft(l[:len(l)-len(first)], "\t ") != "" {
			continue
		}
		indent := l[:len(l)-len(first)]
		ok := true
		for j := 1; j < len(want) && ok; j++ {
			w := trim(want[j])
			ok = trim(file[i+j]) == w || (w != "" && trim(file[i+j]) == indent+w)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestGoBlocksCompile: every ```go block that is not an excerpt is a whole
// Go file, and compiles in this module (each in a package of its own,
// through go build -overlay, so nothing is written into the tree).
func TestGoBlocksCompile(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	overlay := map[string]string{}
	where := map[string]block{}
	var pkgs []string
	for i, b := range blocks(t) {
		if b.lang != "go" || b.marker != "" {
			continue
		}
		if !isWholeFile(b.body) {
			t.Errorf("%s: a go block is either a whole file (package clause first) or marked <!-- code: path --> as an excerpt of one", b)
			continue
		}
		pkg := fmt.Sprintf("docs/zz_blocks/b%d", i)
		src := filepath.Join(dir, fmt.Sprintf("b%d.go", i))
		if err := os.WriteFile(src, []byte(strings.Join(b.body, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay[filepath.Join(abs, filepath.FromSlash(pkg), "main.go")] = src
		where[pkg+"/main.go"] = b
		pkgs = append(pkgs, "./"+pkg)
	}
	t.Logf("%d whole-file blocks", len(pkgs))
	if len(pkgs) == 0 {
		return
	}
	ov, _ := json.Marshal(map[string]any{"Replace": overlay})
	ovFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	// -o a folder: go build writes a lone main package's binary into the
	// current one otherwise.
	cmd := exec.Command("go", append([]string{"build", "-overlay", ovFile, "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	// Name the page and line of each error instead of the overlay's path.
	loc := regexp.MustCompile(`(docs/zz_blocks/b\d+/main\.go):(\d+)`)
	msg := loc.ReplaceAllStringFunc(string(out), func(s string) string {
		m := loc.FindStringSubmatch(s)
		b, ok := where[m[1]]
		if !ok {
			return s
		}
		var n int
		fmt.Sscan(m[2], &n)
		return fmt.Sprintf("%s:%d", b.page.path, b.line+n)
	})
	t.Errorf("go blocks do not compile: %v\n%s", err, msg)
}

func isWholeFile(body []string) bool {
	for _, l := range body {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "//") {
			continue
		}
		return strings.HasPrefix(l, "package ")
	}
	return false
}

// TestLinks: every relative link of every page leads to a file or folder.
func TestLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, pg := range pages(t) {
		for i, l := range pg.prose() {
			for _, m := range link.FindAllStringSubmatch(l, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				p := filepath.Join(root, filepath.FromSlash(pathDir(pg.path)), filepath.FromSlash(target))
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s:%d: link %s leads nowhere", pg.path, i+1, m[1])
				}
			}
		}
	}
}

func pathDir(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// cli builds cmd/interlock once per test run.
func cli(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "interlock-docs")
		if err != nil {
			cliErr = err
			return
		}
		cliBin = filepath.Join(dir, "interlock")
		cmd := exec.Command("go", "build", "-o", cliBin, "./cmd/interlock")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("building cmd/interlock: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// help returns what `interlock ARGS -h` prints.
func help(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(cli(t), append(args, "-h")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h may exit non-zero; the text is what counts
	return out.String()
}

// commandPaths returns the commands `interlock -h` lists, e.g.
// "projections dlq list".
func commandPaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	inList := false
	for _, l := range strings.Split(help(t), "\n") {
		if strings.HasPrefix(l, "commands:") {
			inList = true
			continue
		}
		if !inList || !strings.HasPrefix(l, "  ") {
			if inList && strings.TrimSpace(l) == "" && len(paths) > 0 {
				break
			}
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(l), "  ")
		var words []string
		for _, w := range strings.Fields(name) {
			if strings.ToUpper(w) == w || strings.HasPrefix(w, "[") {
				break // an argument: TYPE, [NAME]
			}
			words = append(words, w)
		}
		paths = append(paths, strings.Join(words, " "))
	}
	if len(paths) == 0 {
		t.Fatalf("interlock -h lists no commands:\n%s", help(t))
	}
	return paths
}

var flagName = regexp.MustCompile(`(?m)^\s+-{1,2}([a-z0-9][a-z0-9-]*)`)

// TestShellCommands: every `interlock` (or `go run ./cmd/interlock`)
// command a shell block runs, or an inline code span names, exists and
// takes the flags it is given; every scripts/*.sh a shell block runs
// exists and knows its subcommand and flags; every local package `go run`
// or `go test` is given exists.
func TestShellCommands(t *testing.T) {
	paths := commandPaths(t)
	flagsOf := map[string]map[string]bool{}
	flags := func(path string) map[string]bool {
		if f, ok := flagsOf[path]; ok {
			return f
		}
		f := map[string]bool{"h": true, "help": true}
		for _, m := range flagName.FindAllStringSubmatch(help(t, strings.Fields(path)...), -1) {
			f[m[1]] = true
		}
		flagsOf[path] = f
		return f
	}
	// checkInterlock checks c if it runs interlock, and reports whether it does.
	checkInterlock := func(where string, c shellCommand) bool {
		words := c.words
		switch {
		case len(words) >= 3 && words[0] == "go" && words[1] == "run" && words[2] == "./cmd/interlock":
			words = words[3:]
		case len(words) >= 1 && words[0] == "interlock":
			words = words[1:]
		default:
			return false
		}
		if len(words) == 0 || strings.HasPrefix(words[0], "-") {
			return true // interlock -h
		}
		path := ""
		for _, p := range paths {
			if len(p) > len(path) && strings.HasPrefix(strings.Join(words, " ")+" ", p+" ") {
				path = p
			}
		}
		if path == "" {
			t.Errorf("%s: %q: no such interlock command (interlock -h lists %s)", where, c.text, strings.Join(paths, ", "))
			return true
		}
		known := flags(path)
		for _, w := range words[len(strings.Fields(path)):] {
			if !strings.HasPrefix(w, "-") || w == "-" || w == "--" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if !known[name] {
				t.Errorf("%s: %q: interlock %s has no flag --%s", where, c.text, path, name)
			}
		}
		return true
	}
	checked := 0
	for _, b := range blocks(t) {
		if b.lang != "sh" && b.lang != "bash" && b.lang != "console" && b.lang != "shell" {
			continue
		}
		for _, c := range shellCommands(b.body) {
			if checkInterlock(b.String(), c) || checkOther(t, b, c) {
				checked++
			}
		}
	}
	// Inline code in prose: `interlock projections reset NAME`.
	span := regexp.MustCompile("`((?:go run \\./cmd/)?interlock [a-z][^`]*)`")
	for _, pg := range pages(t) {
		for i, l := range pg.prose() {
			for _, m := range span.FindAllStringSubmatch(l, -1) {
				for _, c := range shellCommands([]string{m[1]}) {
					if checkInterlock(fmt.Sprintf("%s:%d", pg.path, i+1), c) {
						checked++
					}
				}
			}
		}
	}
	t.Logf("%d commands checked", checked)
}

// checkOther checks the project's scripts and the local packages given to
// go run and go test; it reports whether the command was one of those.
func checkOther(t *testing.T, b block, c shellCommand) bool {
	words := c.words
	if len(words) == 0 {
		return false
	}
	if s := strings.TrimPrefix(words[0], "./"); strings.HasPrefix(s, "scripts/") || s == ".ci/run" {
		raw, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(s)))
		if err != nil {
			t.Errorf("%s: %q: %v", b, c.text, err)
			return true
		}
		// A script's usage is its header comment: each subcommand and
		// flag it is given must appear there.
		usage := string(raw)
		if i := strings.Index(usage, "\nset -"); i > 0 {
			usage = usage[:i]
		}
		for _, w := range words[1:] {
			if strings.HasPrefix(w, "$") || strings.ContainsAny(w, "/=") || w == "" {
				continue
			}
			if strings.HasPrefix(w, "-") || regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(w) {
				if !regexp.MustCompile(`(^|[\s\[|(])` + regexp.QuoteMeta(w) + `($|[\s\]|)])`).MatchString(usage) {
					t.Errorf("%s: %q: %s does not know %q (not in its usage comment)", b, c.text, s, w)
				}
			}
		}
		return true
	}
	if words[0] == "go" && len(words) > 2 && (words[1] == "run" || words[1] == "test" || words[1] == "build" || words[1] == "vet") {
		for _, w := range words[2:] {
			if !strings.HasPrefix(w, "./") || w == "./..." {
				continue
			}
			p := strings.TrimSuffix(strings.TrimSuffix(w, "/..."), "/")
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
				t.Errorf("%s: %q: %s does not exist", b, c.text, w)
			}
		}
		return true
	}
	return false
}

type shellCommand struct {
	text  string
	words []string
}

// shellCommands splits a shell block into simple commands: continued lines
// joined, prompts, comments and leading VAR=value assignments removed,
// split at &&, ||, ; and |.
func shellCommands(body []string) []shellCommand {
	var joined []string
	cur := ""
	for _, l := range body {
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		joined = append(joined, cur+l)
		cur = ""
	}
	var out []shellCommand
	sep := regexp.MustCompile(`\s*(&&|\|\||;|\|)\s*`)
	for _, l := range joined {
		l = strings.TrimPrefix(strings.TrimPrefix(l, "$ "), "# ")
		if strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		for _, part := range sep.Split(l, -1) {
			words := strings.Fields(part)
			for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
				words = words[1:]
			}
			if len(words) > 0 && (words[0] == "eval" || words[0] == "exec" || words[0] == "time") {
				words = words[1:]
			}
			for i, w := range words {
				words[i] = strings.Trim(w, `"'()`)
			}
			if len(words) > 0 {
				out = append(out, shellCommand{text: strings.TrimSpace(part), words: words})
			}
		}
	}
	return out
}
