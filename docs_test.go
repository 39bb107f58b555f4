package main

// Documentation tests: README.md and docs/*.md against the code and action.yml. Pure (no
// cluster, no build), so they run with go test -short.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/testenv"
)

// typoExample is the misspelt variable the docs show meshroll rejecting.
const typoExample = "MESHROLL_WIEGHT"

// mdFile is one Markdown file of the documentation, by its path from the repository root.
type mdFile struct {
	path, text string
}

// docFiles returns README.md and every docs/*.md.
func docFiles(t *testing.T) []mdFile {
	t.Helper()
	paths, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no docs/*.md")
	}
	var files []mdFile
	for _, p := range append([]string{"README.md"}, paths...) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, mdFile{path: filepath.ToSlash(p), text: string(raw)})
	}
	return files
}

// fence is one fenced code block: its info string (language) and body.
type fence struct {
	lang, body string
}

// splitFences returns the text outside fenced code blocks (fences blanked, so line numbers
// and headings stay put) and the blocks.
func splitFences(text string) (prose string, blocks []fence) {
	var out strings.Builder
	var cur *fence
	var body strings.Builder
	for line := range strings.Lines(text) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if cur == nil {
				cur = &fence{lang: strings.TrimPrefix(trimmed, "```")}
				body.Reset()
			} else {
				cur.body = body.String()
				blocks = append(blocks, *cur)
				cur = nil
			}
			out.WriteString("\n")
			continue
		}
		if cur != nil {
			body.WriteString(line)
			out.WriteString("\n")
			continue
		}
		out.WriteString(line)
	}
	return out.String(), blocks
}

// tableCells splits a Markdown table row into trimmed cells without surrounding backticks.
func tableCells(line string) []string {
	parts := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), "`")
	}
	return parts
}

// mdTable is one Markdown table: its header cells and rows, each row with the line it is on.
type mdTable struct {
	file   string
	header []string
	rows   [][]string
	lines  []int
}

// tables returns every table outside code blocks in f.
func tables(f mdFile) []mdTable {
	prose, _ := splitFences(f.text)
	var all []mdTable
	var cur *mdTable
	n := 0
	for line := range strings.Lines(prose) {
		n++
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			if cur != nil {
				all = append(all, *cur)
				cur = nil
			}
			continue
		}
		c := tableCells(line)
		switch {
		case cur == nil:
			cur = &mdTable{file: f.path, header: c}
		case strings.Trim(strings.Join(c, ""), "-: ") == "":
			// the |---| line
		default:
			cur.rows = append(cur.rows, c)
			cur.lines = append(cur.lines, n)
		}
	}
	if cur != nil {
		all = append(all, *cur)
	}
	return all
}

// inputRow is one row of an inputs table.
type inputRow struct {
	where                string // file:line
	action, meaning, def string
}

var inputsHeader = []string{"variable", "action input", "meaning", "default"}

// docInputs returns every row of the inputs tables (header: variable, action input, meaning,
// default) of docs/*.md, by variable; a variable listed more than once has several rows.
func docInputs(t *testing.T) map[string][]inputRow {
	t.Helper()
	rows := map[string][]inputRow{}
	for _, f := range docFiles(t) {
		for _, tb := range tables(f) {
			if len(tb.header) == 0 || tb.header[0] != "variable" || !slices.Contains(tb.header, "action input") {
				continue
			}
			if !slices.Equal(tb.header, inputsHeader) {
				t.Errorf("%s: inputs table header %q, want %q", f.path, tb.header, inputsHeader)
				continue
			}
			if f.path == "README.md" {
				t.Errorf("README.md has an inputs table; the inputs are documented in docs/inputs.md")
			}
			for i, r := range tb.rows {
				where := fmt.Sprintf("%s:%d", f.path, tb.lines[i])
				if len(r) != len(inputsHeader) {
					t.Errorf("%s: inputs row has %d cells, want %d", where, len(r), len(inputsHeader))
					continue
				}
				rows[r[0]] = append(rows[r[0]], inputRow{where: where, action: r[1], meaning: r[2], def: r[3]})
			}
		}
	}
	return rows
}

// Every variable meshroll reads is documented in exactly one inputs row, under the action
// input action.yml maps to it, with the action's default (when it has one) in the default
// column.
func TestDocsInputsTables(t *testing.T) {
	t.Parallel()
	rows := docInputs(t)
	a := readAction(t)

	want := append(config.Variables(), "KUBECONFIG")
	slices.Sort(want)
	var got []string
	for v, rs := range rows {
		got = append(got, v)
		if len(rs) > 1 {
			var at []string
			for _, r := range rs {
				at = append(at, r.where)
			}
			t.Errorf("%s is documented in %d inputs rows (%s); keep one", v, len(rs), strings.Join(at, ", "))
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("variables of the inputs tables in docs/*.md (-config.Variables()+KUBECONFIG +docs):\n%s", diff)
	}

	for variable, rs := range rows {
		r := rs[0]
		if r.meaning == "" || r.def == "" {
			t.Errorf("%s: %s needs a meaning and a default (\"none\" when there is none)", r.where, variable)
		}
		if variable == "KUBECONFIG" {
			if r.action != "—" {
				t.Errorf("%s: KUBECONFIG has no action input, its cell should be —, got %q", r.where, r.action)
			}
			continue
		}
		if r.action != inputName(variable) {
			t.Errorf("%s: %s's action input is %q, want %q", r.where, variable, r.action, inputName(variable))
		}
		if a.Runs.Env[variable] != inputRef(r.action) {
			t.Errorf("%s: %s's action input %q is not what action.yml maps to it (%q)", r.where, variable, r.action, a.Runs.Env[variable])
		}
		in, ok := a.Inputs[r.action]
		if !ok || in.Default == nil || *in.Default == "" {
			continue
		}
		// The row is in the raw text with backticks; its cells had them trimmed at the ends only.
		if def := "`" + *in.Default + "`"; !strings.Contains("`"+r.def+"`", def) {
			t.Errorf("%s: %s's default column %q does not give action.yml's default %s", r.where, variable, r.def, def)
		}
	}
}

func TestReadmeLinksInputs(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "](docs/inputs.md)") {
		t.Error("README.md does not link docs/inputs.md, the reference of every input")
	}
}

// docOutputs returns the rows of the outputs table (header: output, outputs.env, value) as
// output → outputs.env name.
func docOutputs(t *testing.T) map[string]string {
	t.Helper()
	outputs := map[string]string{}
	found := 0
	for _, f := range docFiles(t) {
		for _, tb := range tables(f) {
			if len(tb.header) < 2 || tb.header[0] != "output" || tb.header[1] != "outputs.env" {
				continue
			}
			found++
			for _, r := range tb.rows {
				if len(r) < 2 {
					t.Errorf("%s: outputs row %q has no outputs.env cell", f.path, r)
					continue
				}
				outputs[r[0]] = r[1]
			}
		}
	}
	if found != 1 {
		t.Fatalf("%d outputs tables (output | outputs.env | value) in README.md and docs/*.md, want 1", found)
	}
	return outputs
}

// The outputs table lists the outputs of action.yml, each with the outputs.env name meshroll
// writes, and meshroll accepts those names in its environment (a GitLab job inherits them).
func TestDocsOutputsTable(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	outputs := docOutputs(t)
	var want, got []string
	for name := range a.Outputs {
		want = append(want, name)
	}
	for name, env := range outputs {
		got = append(got, name)
		if w := reservedName(name); env != w {
			t.Errorf("output %s: outputs.env name %q, want %q", name, env, w)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outputs table (-action.yml +docs):\n%s", diff)
	}
	for _, name := range want {
		vars := minimalEnv()
		vars[reservedName(name)] = "x"
		if _, err := config.Load(environ(vars)); err != nil {
			t.Errorf("%s (written to outputs.env) is rejected in meshroll's environment: %v", reservedName(name), err)
		}
	}
}

// reservedName is the outputs.env name of an output: result → MESHROLL_RESULT.
func reservedName(output string) string { return "MESHROLL_" + strings.ToUpper(output) }

var meshrollName = regexp.MustCompile(`MESHROLL_[A-Z0-9_]*[A-Z0-9]`)

// Every MESHROLL_* name in the documentation is one meshroll knows: an input, an output it
// writes, a variable of the test environment, or the typo example.
func TestDocsNamesAreReal(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	known := map[string]string{}
	for _, v := range config.Variables() {
		known[v] = "input"
	}
	for name := range a.Outputs {
		known[reservedName(name)] = "output"
	}
	for _, v := range []string{testenv.AssetsEnv, testenv.IstioCRDsEnv} {
		known[v] = "test environment"
	}
	if _, err := config.Load(environ(map[string]string{"MESHROLL_VIRTUAL_SERVICE": "reviews", "MESHROLL_STABLE_SUBSET": "v1", "MESHROLL_CANARY_SUBSET": "v2", typoExample: "20"})); err == nil {
		t.Errorf("%s is the docs' example of a typo, but meshroll accepts it", typoExample)
	}
	for _, f := range docFiles(t) {
		for i, line := range strings.Split(f.text, "\n") {
			for _, name := range meshrollName.FindAllString(line, -1) {
				if _, ok := known[name]; !ok && name != typoExample {
					t.Errorf("%s:%d: %s is not a meshroll variable, output or test variable", f.path, i+1, name)
				}
			}
		}
	}
}

// The exit code table of README.md lists exactly the exit codes of the run's outcomes.
func TestReadmeExitCodes(t *testing.T) {
	t.Parallel()
	outcomes := []rollout.Outcome{rollout.Promoted, rollout.WeightSet, rollout.RolledBack, rollout.Unchanged, rollout.Status, rollout.DryRun,
		rollout.Invalid, rollout.CanaryFailed, rollout.Inconclusive, rollout.Failed, rollout.Cancelled}
	var want []int
	for _, o := range outcomes {
		if c := o.ExitCode(); !slices.Contains(want, c) {
			want = append(want, c)
		}
	}
	slices.Sort(want)
	var got []int
	for _, f := range docFiles(t)[:1] { // README.md
		for _, tb := range tables(f) {
			if len(tb.header) == 0 || tb.header[0] != "code" {
				continue
			}
			for _, r := range tb.rows {
				c, err := strconv.Atoi(r[0])
				if err != nil {
					t.Errorf("README.md exit code table: %q is not a code", r[0])
					continue
				}
				got = append(got, c)
			}
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("README.md exit code table (-outcomes' exit codes +README):\n%s", diff)
	}
}

var (
	mdLink     = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	codeSpan   = regexp.MustCompile("`[^`]*`")
	mdHeading  = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
	inlineLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// anchors returns the anchors GitHub gives the headings of a Markdown text.
func anchors(text string) map[string]bool {
	prose, _ := splitFences(text)
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(prose, -1) {
		slug := headingSlug(m[1])
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// headingSlug is GitHub's anchor of a heading: lower case, punctuation dropped (but - and _),
// spaces as -.
func headingSlug(heading string) string {
	heading = inlineLink.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestHeadingSlug(t *testing.T) {
	t.Parallel()
	for heading, want := range map[string]string{
		"Exit codes":                   "exit-codes",
		"`result.json`":                "resultjson",
		"Argo CD and field managers":   "argo-cd-and-field-managers",
		"The two commands":             "the-two-commands",
		"Tests & [links](x.md) (v1.2)": "tests--links-v12",
	} {
		if got := headingSlug(heading); got != want {
			t.Errorf("headingSlug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// Every relative link of README.md and docs/*.md points to a file that exists, and an #anchor
// to a heading of that file.
func TestDocsLinks(t *testing.T) {
	t.Parallel()
	files := docFiles(t)
	for _, f := range files {
		prose, _ := splitFences(f.text)
		for i, line := range strings.Split(prose, "\n") {
			line = codeSpan.ReplaceAllString(line, "")
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				where := fmt.Sprintf("%s:%d", f.path, i+1)
				path, anchor, _ := strings.Cut(target, "#")
				file := f.path
				if path != "" {
					file = filepath.ToSlash(filepath.Join(filepath.Dir(f.path), path))
				}
				info, err := os.Stat(file)
				if err != nil {
					t.Errorf("%s: link %s: %s does not exist", where, target, file)
					continue
				}
				if anchor == "" {
					continue
				}
				if info.IsDir() || !strings.HasSuffix(file, ".md") {
					t.Errorf("%s: link %s: an anchor into %s, which is not a Markdown file", where, target, file)
					continue
				}
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if !anchors(string(raw))[anchor] {
					t.Errorf("%s: link %s: %s has no heading with anchor #%s", where, target, file, anchor)
				}
			}
		}
	}
}

// The README's quick starts (and every other meshroll step in the docs) give input that
// meshroll accepts: a GitHub step's with:, a GitLab job's variables, a docker run's -e, a
// Kubernetes Job's env.
func TestDocsQuickStartsGiveValidInput(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	kinds := map[string]int{} // README only: which quick starts were found
	for _, f := range docFiles(t) {
		_, blocks := splitFences(f.text)
		for i, b := range blocks {
			where := fmt.Sprintf("%s, code block %d", f.path, i+1)
			for kind, vars := range snippetInputs(t, where, a, b) {
				if f.path == "README.md" {
					kinds[kind]++
				}
				if _, err := config.Load(environ(vars)); err != nil {
					t.Errorf("%s (%s): meshroll rejects its input: %v", where, kind, err)
				}
			}
		}
	}
	for _, kind := range []string{"github", "gitlab", "docker run", "kubernetes job"} {
		if kinds[kind] == 0 {
			t.Errorf("README.md has no %s quick start", kind)
		}
	}
}

var dockerEnv = regexp.MustCompile(`-e ((?:MESHROLL_)?[A-Z_]+)=(\S+)`)

// snippetInputs returns the meshroll environment each meshroll run in a code block gets, by
// kind of snippet; nothing for a block that runs no meshroll.
func snippetInputs(t *testing.T, where string, a actionFile, b fence) map[string]map[string]string {
	t.Helper()
	found := map[string]map[string]string{}
	switch {
	case (b.lang == "sh" || b.lang == "") && strings.Contains(b.body, "docker run") && strings.Contains(b.body, "-e MESHROLL_"):
		vars := map[string]string{}
		for _, m := range dockerEnv.FindAllStringSubmatch(b.body, -1) {
			vars[m[1]] = m[2]
		}
		found["docker run"] = vars
	case b.lang == "yaml":
		var doc any
		if err := yaml.Unmarshal([]byte(b.body), &doc); err != nil {
			if strings.Contains(b.body, "meshroll") {
				t.Errorf("%s: not YAML: %v", where, err)
			}
			return nil
		}
		switch doc := doc.(type) {
		case []any: // GitHub steps
			for _, s := range doc {
				step := mapOf(s)
				if !strings.HasPrefix(fmt.Sprint(step["uses"]), "meshroll/meshroll@") {
					continue
				}
				with := map[string]string{}
				for k, v := range mapOf(step["with"]) {
					with[k] = fmt.Sprint(v)
				}
				found["github"] = githubEnv(t, a, with)
			}
		case map[string]any:
			if doc["kind"] == "Job" {
				vars := map[string]string{}
				spec := mapOf(mapOf(mapOf(doc["spec"])["template"])["spec"])
				for _, c := range anyList(spec["containers"]) {
					for _, e := range anyList(mapOf(c)["env"]) {
						vars[fmt.Sprint(mapOf(e)["name"])] = fmt.Sprint(mapOf(e)["value"])
					}
				}
				found["kubernetes job"] = vars
				break
			}
			for name, j := range doc { // GitLab jobs
				job := mapOf(j)
				if !slices.ContainsFunc(anyList(job["script"]), func(s any) bool { return s == "meshroll" }) {
					continue
				}
				image := mapOf(job["image"])
				if !strings.HasSuffix(fmt.Sprint(image["name"]), "-shell") || fmt.Sprint(image["entrypoint"]) != "[]" {
					t.Errorf("%s: job %s: image %v; want the shell target and entrypoint [\"\"]", where, name, image)
				}
				vars := map[string]string{}
				for k, v := range mapOf(job["variables"]) {
					vars[k] = fmt.Sprint(v)
				}
				found["gitlab"] = vars
			}
		}
	}
	return found
}
