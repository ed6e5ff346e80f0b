package deploytest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	body        []instruction
}

// parseDockerfile splits a Dockerfile into stages. It understands what this
// repository's Dockerfile uses: comments, backslash continuations and
// `FROM [--platform=...] image [AS name]`; heredocs are not supported.
func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		ins     []instruction
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments inside a continuation are dropped too, as Docker does
		}
		if pending.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, `\`)
		pending.WriteString(strings.TrimSuffix(line, `\`))
		pending.WriteByte(' ')
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		ins = append(ins, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		pending.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if pending.Len() != 0 {
		t.Fatalf("%s:%d: unterminated continuation", file, start)
	}

	var stages []stage
	for _, in := range ins {
		if in.cmd != "FROM" {
			if len(stages) == 0 {
				if in.cmd != "ARG" { // only ARG may precede the first FROM
					t.Fatalf("%s:%d: %s before the first FROM", file, in.line, in.cmd)
				}
				continue
			}
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
			continue
		}
		var words []string
		for _, w := range strings.Fields(in.args) {
			if !strings.HasPrefix(w, "--") {
				words = append(words, w)
			}
		}
		s := stage{}
		switch {
		case len(words) == 1:
			s.image = words[0]
		case len(words) == 3 && strings.EqualFold(words[1], "AS"):
			s.image, s.name = words[0], words[2]
		default:
			t.Fatalf("%s:%d: cannot parse FROM %s", file, in.line, in.args)
		}
		stages = append(stages, s)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the last cmd instruction of the stage: the one that counts
// for ENTRYPOINT, CMD and USER.
func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// execForm decodes a JSON-array (exec form) argument such as ["/interlock"].
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("line %d: %s %s is not in exec form (a JSON array): %v", in.line, in.cmd, in.args, err)
	}
	return v
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d FROM lines: want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	if !strings.HasPrefix(build.image, "golang:1.26") {
		t.Errorf("build stage image %q: want golang:1.26", build.image)
	}

	// The go build, and the environment it runs with.
	var goBuild instruction
	for _, in := range build.all("RUN") {
		if strings.Contains(in.args, "go build") {
			goBuild = in
		}
	}
	if goBuild.cmd == "" {
		t.Fatal("build stage has no RUN go build")
	}
	cgoOff := strings.Contains(goBuild.args, "CGO_ENABLED=0")
	for _, in := range build.all("ENV") {
		cgoOff = cgoOff || strings.Contains(in.args, "CGO_ENABLED=0")
	}
	if !cgoOff {
		t.Error("go build does not run with CGO_ENABLED=0: the binary would need libc, which the final image lacks")
	}
	for _, want := range []string{"-trimpath", "-ldflags", "-s -w", "./cmd/interlock"} {
		if !strings.Contains(goBuild.args, want) {
			t.Errorf("line %d: go build lacks %q: %s", goBuild.line, want, goBuild.args)
		}
	}
	out := flagValue(strings.Fields(goBuild.args), "-o")
	if out == "" {
		t.Fatalf("line %d: go build has no -o output path", goBuild.line)
	}

	// The final image: minimal and non-root.
	if strings.HasPrefix(final.image, "golang") {
		t.Errorf("final image %q is the build image", final.image)
	}
	distrolessNonroot := strings.HasPrefix(final.image, "gcr.io/distroless/static") && strings.HasSuffix(final.image, ":nonroot")
	user, hasUser := final.last("USER")
	switch {
	case hasUser:
		uid, _, _ := strings.Cut(user.args, ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("line %d: USER %s: want a numeric non-root uid (so runAsNonRoot can verify it)", user.line, user.args)
		}
	case !distrolessNonroot:
		t.Errorf("final image %q runs as root: use a :nonroot distroless base or a numeric USER", final.image)
	}

	// The binary is copied from the build stage to /interlock, which is the
	// entry point.
	copied := false
	for _, in := range final.all("COPY") {
		f := strings.Fields(in.args)
		from := ""
		for _, w := range f {
			if v, ok := strings.CutPrefix(w, "--from="); ok {
				from = v
			}
		}
		if len(f) >= 3 && (from == build.name || from == "0") && f[len(f)-2] == out && f[len(f)-1] == "/interlock" {
			copied = true
		}
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s %s /interlock", build.name, out)
	}
	ep, ok := final.last("ENTRYPOINT")
	if !ok {
		t.Fatal("final stage has no ENTRYPOINT")
	}
	if got := execForm(t, ep); !slices.Equal(got, []string{"/interlock"}) {
		t.Errorf("ENTRYPOINT %q, want [\"/interlock\"]", got)
	}
	cmd, ok := final.last("CMD")
	if !ok {
		t.Fatal("final stage has no CMD")
	}
	if got := execForm(t, cmd); !slices.Equal(got, []string{"serve"}) {
		t.Errorf("CMD %q, want [\"serve\"]", got)
	}
}

func flagValue(words []string, name string) string {
	for i, w := range words {
		if w == name && i+1 < len(words) {
			return words[i+1]
		}
		if v, ok := strings.CutPrefix(w, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestDockerignoreKeepsSources checks that .dockerignore leaves in the build
// context every file `go build ./cmd/interlock` reads: go.mod, go.sum and the
// Go and embedded files of every package of this module it imports.
func TestDockerignoreKeepsSources(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for l := range strings.SplitSeq(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%q) are not understood by this test; extend ignored()", l)
		}
		patterns = append(patterns, l)
	}

	goCmd := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}`, "./cmd/interlock")
	goCmd.Dir = root
	listed, err := goCmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for f := range strings.SplitSeq(strings.TrimSpace(string(listed)), "\n") {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 3 {
		t.Fatalf("go list found no source files: %q", listed)
	}
	for _, f := range files {
		if p, ok := ignored(patterns, f); ok {
			t.Errorf(".dockerignore pattern %q excludes %s, which the image build needs", p, f)
		}
	}
}

// ignored reports whether a .dockerignore pattern excludes file (slash
// separated, relative to the context root): the pattern matches the file or
// one of its parent directories, with ** matching any number of directories.
func ignored(patterns []string, file string) (string, bool) {
	parts := strings.Split(file, "/")
	for _, p := range patterns {
		pp := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
		for i := 1; i <= len(parts); i++ {
			if matchSegments(pp, parts[:i]) {
				return p, true
			}
		}
	}
	return "", false
}

func matchSegments(pattern, name []string) bool {
	if len(pattern) == 0 {
		return len(name) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchSegments(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pattern[0], name[0])
	return err == nil && ok && matchSegments(pattern[1:], name[1:])
}
