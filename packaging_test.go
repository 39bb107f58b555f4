package main

// Packaging tests: the GitHub Action, the Dockerfile and the CI examples against the code
// (docs_test.go holds the documentation to them). No network and no Docker engine: the
// Dockerfile's go build line is run as it stands and its binary inspected instead.
// install_test.go runs the action's install script, release_test.go the release's build.

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/config"
)

// actionFile is the part of action.yml meshroll uses. Parsed strictly: an unknown key (a typo
// such as `defualt`) or a duplicate one fails the test instead of being ignored.
type actionFile struct {
	Name        string                  `json:"name"`
	Description string                  `json:"description"`
	Author      string                  `json:"author"`
	Branding    map[string]string       `json:"branding"`
	Inputs      map[string]actionInput  `json:"inputs"`
	Outputs     map[string]actionOutput `json:"outputs"`
	Runs        struct {
		Using string       `json:"using"`
		Steps []actionStep `json:"steps"`
		// Env is what the action passes to meshroll: the MESHROLL_* variables of the env of
		// the step that runs it (runStepID), each an input. Filled in by readAction.
		Env map[string]string `json:"-"`
	} `json:"runs"`
}

// actionStep is one step of the composite action.
type actionStep struct {
	ID    string            `json:"id"`
	Name  string            `json:"name"`
	If    string            `json:"if"`
	Uses  string            `json:"uses"`
	With  map[string]string `json:"with"`
	Shell string            `json:"shell"`
	Env   map[string]string `json:"env"`
	Run   string            `json:"run"`
}

// The composite action's steps, by id: install picks the binary (installScript), run runs it
// with the inputs in its env and leaves meshroll's step outputs, which the action forwards.
const (
	installStepID = "install"
	runStepID     = "run"
	installScript = ".github/action/install.sh"
)

// step returns the step with this id.
func (a actionFile) step(t *testing.T, id string) actionStep {
	t.Helper()
	for _, s := range a.Runs.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("action.yml has no step with id %q", id)
	return actionStep{}
}

type actionInput struct {
	Description string  `json:"description"`
	Required    bool    `json:"required"`
	Default     *string `json:"default"`
}

type actionOutput struct {
	Description string `json:"description"`
	Value       string `json:"value"`
}

func readAction(t *testing.T) actionFile {
	t.Helper()
	raw, err := os.ReadFile("action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var a actionFile
	if err := yaml.UnmarshalStrict(raw, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	a.Runs.Env = map[string]string{}
	for variable, value := range a.step(t, runStepID).Env {
		// The prefix as meshroll matches it (any case): every such variable reaches meshroll.
		if strings.HasPrefix(strings.ToUpper(variable), "MESHROLL_") {
			a.Runs.Env[variable] = value
		}
	}
	return a
}

// inputName is the action input of a MESHROLL_* variable: MESHROLL_VIRTUAL_SERVICE → virtual-service.
func inputName(variable string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(variable, "MESHROLL_"), "_", "-"))
}

func inputRef(name string) string { return "${{ inputs." + name + " }}" }

// minimalEnv is the smallest valid input: the three required variables.
func minimalEnv() map[string]string {
	return map[string]string{
		"MESHROLL_VIRTUAL_SERVICE": "reviews",
		"MESHROLL_STABLE_SUBSET":   "v1",
		"MESHROLL_CANARY_SUBSET":   "v2",
	}
}

func environ(vars map[string]string) []string {
	var list []string
	for k, v := range vars {
		list = append(list, k+"="+v)
	}
	slices.Sort(list)
	return list
}

// githubEnv is the environment meshroll gets from the action for a step with these `with:`
// values: every variable of the run step's env, its input taken from with or else its default.
func githubEnv(t *testing.T, a actionFile, with map[string]string) map[string]string {
	t.Helper()
	for name := range with {
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("with: %s is not an input of action.yml", name)
		}
	}
	env := map[string]string{}
	for variable, value := range a.Runs.Env {
		name := strings.TrimSuffix(strings.TrimPrefix(value, "${{ inputs."), " }}")
		in, ok := a.Inputs[name]
		if !ok || value != inputRef(name) {
			t.Fatalf("the run step's env %s: %q is not an input reference", variable, value)
		}
		switch v, set := with[name]; {
		case set:
			env[variable] = v
		case in.Default != nil:
			env[variable] = *in.Default
		default:
			env[variable] = ""
		}
	}
	return env
}

func TestActionInputsMatchConfig(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	variables := config.Variables()

	inputOf := map[string]string{} // variable → input
	for variable, value := range a.Runs.Env {
		if !slices.Contains(variables, variable) {
			t.Errorf("the run step's env %s: not a variable of config.Variables()", variable)
		}
		want := inputName(variable)
		if value != inputRef(want) {
			t.Errorf("the run step's env %s: %q, want %q", variable, value, inputRef(want))
		}
		inputOf[variable] = want
	}
	for _, variable := range variables {
		name, ok := inputOf[variable]
		if !ok {
			t.Errorf("%s has no input: add input %q to action.yml and `%s: %s` to the env of its step %q", variable, inputName(variable), variable, inputRef(inputName(variable)), runStepID)
			continue
		}
		if _, ok := a.Inputs[name]; !ok {
			t.Errorf("the run step's env %s refers to input %q, which action.yml does not declare", variable, name)
		}
	}
	for name, in := range a.Inputs {
		variable := "MESHROLL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if inputOf[variable] != name {
			t.Errorf("input %q is not passed to meshroll: the env of step %q needs `%s: %s` (and %s must be in config.Variables())", name, runStepID, variable, inputRef(name), variable)
		}
		if in.Description == "" {
			t.Errorf("input %q has no description", name)
		}
		if in.Required {
			t.Errorf("input %q: required: true; meshroll checks its own required inputs (exit 2), keep required: false", name)
		}
		if in.Default == nil {
			t.Errorf("input %q has no default; give meshroll's own default, or '' for none", name)
		}
	}
}

// An input's default must mean what meshroll does without it, so that the action and
// `docker run` behave the same.
func TestActionDefaultsAreMeshrollDefaults(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	want, err := config.Load(environ(minimalEnv()))
	if err != nil {
		t.Fatalf("minimal environment: %v", err)
	}
	for _, variable := range config.Variables() {
		in, ok := a.Inputs[inputName(variable)]
		if !ok || in.Default == nil || *in.Default == "" {
			continue
		}
		vars := minimalEnv()
		vars[variable] = *in.Default
		got, err := config.Load(environ(vars))
		if err != nil {
			t.Errorf("default of input %q (%s=%s) is rejected by meshroll: %v", inputName(variable), variable, *in.Default, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("default of input %q (%s=%s) is not meshroll's default (-meshroll +action):\n%s", inputName(variable), variable, *in.Default, diff)
		}
	}
}

// All defaults arrive together, whatever the mode: a default that is only valid in one mode
// (MESHROLL_STEPS outside progress) would break the others.
func TestActionDefaultsWorkInEveryMode(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	for _, mode := range []string{"phase", "progress", "promote", "rollback", "status"} {
		with := map[string]string{"mode": mode, "virtual-service": "reviews", "stable-subset": "v1", "canary-subset": "v2"}
		if mode == "phase" {
			with["weight"] = "20"
		}
		plain := map[string]string{}
		for name, v := range with {
			plain["MESHROLL_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))] = v
		}
		want, err := config.Load(environ(plain))
		if err != nil {
			t.Fatalf("mode %s without the action: %v", mode, err)
		}
		got, err := config.Load(environ(githubEnv(t, a, with)))
		if err != nil {
			t.Errorf("mode %s through the action's defaults is rejected: %v", mode, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mode %s: the action's defaults change the configuration (-meshroll +action):\n%s", mode, diff)
		}
	}
}

// The inputs meshroll itself requires say so first in their description, and only they.
func TestActionRequiredInputsSayRequired(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	for _, variable := range config.Variables() {
		name := inputName(variable)
		in, ok := a.Inputs[name]
		if !ok {
			continue // reported by TestActionInputsMatchConfig
		}
		vars := minimalEnv()
		delete(vars, variable)
		_, err := config.Load(environ(vars))
		required := err != nil
		if says := strings.HasPrefix(in.Description, "Required."); says != required {
			t.Errorf("input %q: description starts with \"Required.\": %v, but meshroll requires it: %v (%v)", name, says, required, err)
		}
	}
}

func TestActionOutputs(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	// The GitHub reporter writes exactly these to $GITHUB_OUTPUT; its own test checks the writing.
	want := []string{"canary_weight", "duration_seconds", "failed_check", "reason", "result", "stable_weight", "steps_completed"}
	var got []string
	for name, out := range a.Outputs {
		got = append(got, name)
		if out.Description == "" {
			t.Errorf("output %q has no description", name)
		}
		// meshroll writes the run step's $GITHUB_OUTPUT; a composite action's outputs are
		// only what it forwards.
		if v := "${{ steps." + runStepID + ".outputs." + name + " }}"; out.Value != v {
			t.Errorf("output %q: value %q, want %q", name, out.Value, v)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("action.yml outputs (-want +got):\n%s", diff)
	}
}

func TestActionMetadata(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	if a.Name == "" || a.Description == "" {
		t.Errorf("action.yml needs a name and a description")
	}
	if a.Author != "meshroll" {
		t.Errorf("author = %q, want meshroll", a.Author)
	}
	if a.Branding["icon"] == "" || a.Branding["color"] == "" {
		t.Errorf("branding needs an icon and a color, got %v", a.Branding)
	}
	if a.Runs.Using != "composite" {
		t.Errorf("runs: using %q, want composite (meshroll runs on the runner)", a.Runs.Using)
	}
}

// The composite action installs the binary of its release (or builds it from source when its
// ref is no release) and runs it as the step's own process.
func TestActionSteps(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	const script = `sh "$GITHUB_ACTION_PATH/` + installScript + `"`
	refs := map[string]string{ // what install.sh needs to find the release
		"ACTION_REPOSITORY": "${{ github.action_repository }}",
		"ACTION_REF":        "${{ github.action_ref }}",
	}
	binary := "${{ steps." + installStepID + ".outputs.path }}"
	fromSource := "steps." + installStepID + ".outputs.source == 'build'"

	if len(a.Runs.Steps) != 4 {
		t.Fatalf("%d steps, want 4: install, set up Go, build from source, run", len(a.Runs.Steps))
	}
	install, setupGo, build, run := a.Runs.Steps[0], a.Runs.Steps[1], a.Runs.Steps[2], a.Runs.Steps[3]
	if install.ID != installStepID || install.Run != script || install.If != "" {
		t.Errorf("step 1: id %q, run %q, if %q; want id %s, run %s, always", install.ID, install.Run, install.If, installStepID, script)
	}
	if diff := cmp.Diff(refs, install.Env); diff != "" {
		t.Errorf("step %s: env (-want +got):\n%s", installStepID, diff)
	}

	if name, _, _ := strings.Cut(setupGo.Uses, "@"); name != "actions/setup-go" || setupGo.If != fromSource {
		t.Errorf("step 2: uses %q, if %q; want actions/setup-go, if %s", setupGo.Uses, setupGo.If, fromSource)
	}
	if f := setupGo.With["go-version-file"]; f != "${{ github.action_path }}/go.mod" {
		t.Errorf("step 2: go-version-file %q, want the action's go.mod", f)
	}
	if build.Run != script+" build" || build.If != fromSource {
		t.Errorf("step 3: run %q, if %q; want %s build, if %s", build.Run, build.If, script, fromSource)
	}
	if diff := cmp.Diff(map[string]string{"ACTION_REPOSITORY": refs["ACTION_REPOSITORY"], "ACTION_REF": refs["ACTION_REF"], "BINARY": binary}, build.Env); diff != "" {
		t.Errorf("step 3: env (-want +got):\n%s", diff)
	}

	// The runner sends a cancelled job's SIGINT to the step's shell alone: exec makes meshroll
	// that process, so that it returns the traffic to stable (on-cancel).
	if run.ID != runStepID || run.Run != `exec "$BINARY"` || run.If != "" {
		t.Errorf("step 4: id %q, run %q, if %q; want id %s, run exec \"$BINARY\", always", run.ID, run.Run, run.If, runStepID)
	}
	for variable, value := range run.Env {
		if !strings.HasPrefix(strings.ToUpper(variable), "MESHROLL_") && (variable != "BINARY" || value != binary) {
			t.Errorf("step %s: env %s: %q; meshroll's step gets BINARY: %s and the inputs", runStepID, variable, value, binary)
		}
	}

	for i, s := range a.Runs.Steps {
		if s.Uses == "" && (s.Shell != "sh" || s.Run == "") {
			t.Errorf("step %d: shell %q; want sh, on Linux and macOS runners alike", i+1, s.Shell)
		}
		// Values reach a script through env:, never spliced into it (script injection).
		if strings.Contains(s.Run, "${{") {
			t.Errorf("step %d: run %q holds an expression; pass it in env", i+1, s.Run)
		}
		if s.Uses != "" && !pinnedAction.MatchString(s.Uses) {
			t.Errorf("step %d: uses %s; pin the action to a commit (owner/repo@<40 hex>)", i+1, s.Uses)
		}
	}
	if info, err := os.Stat(installScript); err != nil || info.Mode()&0o111 == 0 {
		t.Errorf("%s: %v; want an executable script", installScript, err)
	}
}

// dockerStage is one FROM … section of the Dockerfile.
type dockerStage struct {
	base, name   string
	instructions []dockerInstruction
}

type dockerInstruction struct {
	cmd  string // upper case: RUN, COPY, USER, …
	args string
	line int
}

// lastArgs returns the arguments of the stage's last instruction cmd, and whether it has one.
func (s dockerStage) lastArgs(cmd string) (string, bool) {
	for _, in := range slices.Backward(s.instructions) {
		if in.cmd == cmd {
			return in.args, true
		}
	}
	return "", false
}

// parseDockerfile splits a Dockerfile into stages, joining continuation lines and dropping
// comments (also inside continuations, as Docker does).
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	var pending strings.Builder
	start, n := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(body + " ")
			continue
		}
		pending.WriteString(line)
		text := strings.TrimSpace(pending.String())
		pending.Reset()
		if text == "" {
			continue
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") { // --platform=…
					words = append(words, w)
				}
			}
			if len(words) == 0 {
				t.Fatalf("%s:%d: FROM without an image", path, start)
			}
			s := dockerStage{base: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue // global build arguments
			}
			t.Fatalf("%s:%d: %s before the first FROM", path, start, in.cmd)
		}
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if pending.Len() > 0 {
		t.Fatalf("%s: ends in a continuation line", path)
	}
	return stages
}

func stageNamed(t *testing.T, stages []dockerStage, name string) dockerStage {
	t.Helper()
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("Dockerfile has no stage %q", name)
	return dockerStage{}
}

// shellWords splits a shell command the way sh would for the simple commands a Dockerfile RUN
// line should hold: words, single and double quotes, $NAME and ${NAME} from vars. Anything
// more (;, &&, |, redirections, command substitution) is refused, so that the test runs
// exactly what Docker would.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	expand := func(i int) (int, error) { // s[i] == '$'
		rest := s[i+1:]
		var name string
		if strings.HasPrefix(rest, "{") {
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("unterminated ${ in %q", s)
			}
			name = rest[1:end]
			i += end + 2
		} else {
			m := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`).FindString(rest)
			if m == "" {
				return 0, fmt.Errorf("unsupported $ in %q", s)
			}
			name = m
			i += len(m) + 1
		}
		v, ok := vars[name]
		if !ok {
			return 0, fmt.Errorf("$%s is not declared with ARG in the build stage (Docker would substitute an empty string)", name)
		}
		word.WriteString(v)
		return i, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			word.WriteString(s[i+1 : i+1+end])
			inWord = true
			i += end + 2
		case c == '"':
			inWord = true
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated \" in %q", s)
				}
				if s[i] == '"' {
					i++
					break
				}
				switch s[i] {
				case '\\':
					if i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
						word.WriteByte(s[i+1])
						i += 2
					} else {
						word.WriteByte('\\')
						i++
					}
				case '$':
					var err error
					if i, err = expand(i); err != nil {
						return nil, err
					}
				case '`':
					return nil, fmt.Errorf("command substitution in %q", s)
				default:
					word.WriteByte(s[i])
					i++
				}
			}
		case c == '$':
			inWord = true
			var err error
			if i, err = expand(i); err != nil {
				return nil, err
			}
		case strings.IndexByte(";&|<>()`\\*?[#~", c) >= 0:
			return nil, fmt.Errorf("%q holds %q: keep the go build command alone and simple on its RUN line", s, c)
		default:
			word.WriteByte(c)
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// goBuild is the build stage's go build command, with VERSION given as with --build-arg.
type goBuild struct {
	env    []string // leading NAME=value assignments
	args   []string // go build … (the go command's arguments)
	output string   // the -o path, as in the Dockerfile
	outIdx int      // index in args of the -o value
	line   int
}

func dockerfileGoBuild(t *testing.T, build dockerStage, version string) goBuild {
	t.Helper()
	vars := map[string]string{}
	for _, in := range build.instructions {
		switch in.cmd {
		case "ARG":
			name, value, _ := strings.Cut(in.args, "=")
			vars[name] = strings.Trim(value, `"`)
			if name == "VERSION" {
				vars[name] = version
			}
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			if _, ok := vars["VERSION"]; !ok {
				t.Fatalf("Dockerfile:%d: go build before `ARG VERSION=dev` in the build stage", in.line)
			}
			words, err := shellWords(in.args, vars)
			if err != nil {
				t.Fatalf("Dockerfile:%d: %v", in.line, err)
			}
			b := goBuild{line: in.line}
			for len(words) > 0 && assignment.MatchString(words[0]) {
				b.env = append(b.env, words[0])
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				t.Fatalf("Dockerfile:%d: want `[NAME=value …] go build …`, got %q", in.line, words)
			}
			b.args = words[1:]
			for i, w := range b.args {
				if w == "-o" && i+1 < len(b.args) {
					b.output, b.outIdx = b.args[i+1], i+1
				}
			}
			if b.output == "" {
				t.Fatalf("Dockerfile:%d: go build without -o <path>", in.line)
			}
			return b
		}
	}
	t.Fatal("Dockerfile: the build stage has no RUN … go build line")
	return goBuild{}
}

func TestDockerfileStages(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, "Dockerfile")
	if len(stages) == 0 {
		t.Fatal("Dockerfile has no stage")
	}
	for _, s := range stages {
		// Docker Hub short names only: a registry host does not belong in this repository.
		if first, _, ok := strings.Cut(s.base, "/"); ok && strings.ContainsAny(first, ".:") {
			t.Errorf("stage %q: FROM %s names a registry host; use the Docker Hub short name", s.name, s.base)
		}
	}

	build := stageNamed(t, stages, "build")
	// The image's Go must be the one go.mod asks for (go 1.26.x → golang:1.26-…).
	goMod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "golang:" + string(goLine[1]) + "-"; !strings.HasPrefix(build.base, want) {
		t.Errorf("build stage FROM %s, want %s… (go.mod says go %s)", build.base, want, goLine[1])
	}
	binary := dockerfileGoBuild(t, build, "dev").output

	last := stages[len(stages)-1]
	if last.base != "scratch" || last.name != "runtime" {
		t.Errorf("last stage (the default target: docker build ., and the image of a docker:// step) is FROM %s AS %s, want FROM scratch AS runtime", last.base, last.name)
	}
	if user, ok := last.lastArgs("USER"); ok {
		t.Errorf("runtime stage has USER %s; GitHub runs a docker:// step as root and meshroll must write $GITHUB_OUTPUT", user)
	}

	nonroot := stageNamed(t, stages, "nonroot")
	if nonroot.base != "scratch" {
		t.Errorf("nonroot stage FROM %s, want scratch", nonroot.base)
	}
	if user, _ := nonroot.lastArgs("USER"); user != "65532:65532" {
		t.Errorf("nonroot stage USER %q, want 65532:65532", user)
	}

	shell := stageNamed(t, stages, "shell")
	image, _, _ := strings.Cut(shell.base, ":")
	if !slices.Contains([]string{"busybox", "alpine", "debian", "ubuntu"}, image) {
		t.Errorf("shell stage FROM %s: want an image that provides sh and cat (busybox, alpine, debian, ubuntu)", shell.base)
	}
	if user, ok := shell.lastArgs("USER"); ok && user != "root" && user != "0" {
		t.Errorf("shell stage USER %s, want root (the default)", user)
	}
	if ep, _ := shell.lastArgs("ENTRYPOINT"); ep != "[]" {
		t.Errorf("shell stage ENTRYPOINT %q, want [] so that GitLab can run the job script", ep)
	}
	if c, _ := shell.lastArgs("CMD"); c != `["meshroll"]` {
		t.Errorf("shell stage CMD %q, want [\"meshroll\"]", c)
	}

	for stage, dest := range map[string]string{"runtime": "/meshroll", "nonroot": "/meshroll", "shell": "/usr/local/bin/meshroll"} {
		s := stageNamed(t, stages, stage)
		var copies []string
		for _, in := range s.instructions {
			if in.cmd == "COPY" {
				copies = append(copies, in.args)
			}
		}
		for _, want := range []string{
			"--from=build " + binary + " " + dest,
			"--from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
		} {
			if !slices.Contains(copies, want) {
				t.Errorf("%s stage: no COPY %s (has %q)", stage, want, copies)
			}
		}
		if stage != "shell" {
			if ep, _ := s.lastArgs("ENTRYPOINT"); ep != `["`+dest+`"]` {
				t.Errorf("%s stage ENTRYPOINT %q, want [%q]", stage, ep, dest)
			}
		}
	}

	for _, label := range []string{"title", "description", "source", "version"} {
		if l, _ := last.lastArgs("LABEL"); !strings.Contains(l, "org.opencontainers.image."+label+"=") {
			t.Errorf("runtime stage has no label org.opencontainers.image.%s", label)
		}
	}
}

// The build context must hold what go build reads.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		pattern := strings.TrimSuffix(strings.TrimSpace(line), "/")
		if pattern == "" || strings.HasPrefix(pattern, "#") || strings.HasPrefix(pattern, "!") {
			continue
		}
		for _, needed := range []string{"go.mod", "go.sum", "main.go", "internal", "internal/app/app.go"} {
			if ok, _ := filepath.Match(pattern, needed); ok {
				t.Errorf(".dockerignore %q excludes %s, which the image build needs", pattern, needed)
			}
		}
	}
}

// Runs the Dockerfile's go build as it stands and checks the binary a scratch image gets.
func TestDockerfileBuildsStaticVersionedBinary(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is an ELF for Linux; build and inspect it on Linux")
	}
	if testing.Short() {
		t.Skip("builds meshroll; skipped with -short")
	}
	bin := binary(t) // built with the Dockerfile's go build line, VERSION=test-1.2.3
	ctx := t.Context()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a PT_INTERP program header: it is dynamically linked and will not start in a scratch image (build with CGO_ENABLED=0)")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v); a scratch image has none", libs, err)
	}
	for _, name := range []string{".symtab", ".debug_info", ".zdebug_info"} {
		if f.Section(name) != nil {
			t.Errorf("the binary has a %s section: -ldflags \"-s -w\" should strip it", name)
		}
	}

	run := exec.CommandContext(ctx, bin)
	run.Env = []string{"MESHROLL_MODE=version"}
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("MESHROLL_MODE=version meshroll: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != binaryVersion {
		t.Errorf("MESHROLL_MODE=version printed %q, want %q (the VERSION build argument)", got, binaryVersion)
	}
}

// The examples are meant to run as written: the variables they give must be valid input.
func TestExamplesGiveValidInput(t *testing.T) {
	t.Parallel()
	a := readAction(t)

	workflows, err := filepath.Glob("examples/github/*.yml")
	if err != nil || len(workflows) < 2 {
		t.Fatalf("examples/github: %d workflows (%v), want workflow.yml and gates.yml at least", len(workflows), err)
	}
	for _, file := range workflows {
		t.Run(file, func(t *testing.T) { checkWorkflowExample(t, a, file) })
	}

	t.Run("gitlab", checkGitLabExample) // component_test.go

	t.Run("jenkins", func(t *testing.T) {
		t.Parallel()
		raw, err := os.ReadFile("examples/jenkins/Jenkinsfile")
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for _, m := range regexp.MustCompile(`-e ((?:MESHROLL_)?[A-Z_]+)=(\S+)`).FindAllStringSubmatch(string(raw), -1) {
			vars[m[1]] = m[2]
		}
		if vars["KUBECONFIG"] == "" {
			t.Error("the docker run passes no KUBECONFIG")
		}
		if _, err := config.Load(environ(vars)); err != nil {
			t.Errorf("meshroll rejects the docker run's variables: %v", err)
		}
	})
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// checkWorkflowExample holds a GitHub workflow example to valid input: every meshroll step's
// inputs load, no two steps share an output directory, and the outputs it reads exist.
func checkWorkflowExample(t *testing.T, a actionFile, file string) {
	t.Parallel()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				ID   string         `json:"id"`
				Uses string         `json:"uses"`
				With map[string]any `json:"with"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		t.Fatalf("workflow.yml: %v", err)
	}
	ids := map[string]bool{}
	outputDirs := map[string]string{} // output-dir → the step that writes there
	uses := 0
	for _, job := range wf.Jobs {
		for _, step := range job.Steps {
			if !strings.HasPrefix(step.Uses, "meshroll/meshroll@") {
				continue
			}
			uses++
			ids[step.ID] = true
			with := map[string]string{}
			for k, v := range step.With {
				with[k] = fmt.Sprint(v)
			}
			// A second step writing to the same directory would overwrite the first's files.
			dir := with["output-dir"]
			if dir == "" && a.Inputs["output-dir"].Default != nil {
				dir = *a.Inputs["output-dir"].Default
			}
			if other, ok := outputDirs[dir]; ok {
				t.Errorf("steps %q and %q both write their files to %s: give each its own output-dir", other, step.ID, dir)
			}
			outputDirs[dir] = step.ID
			if _, err := config.Load(environ(githubEnv(t, a, with))); err != nil {
				t.Errorf("step %q: meshroll rejects its inputs: %v", step.ID, err)
			}
		}
	}
	if uses == 0 {
		t.Error("no step uses meshroll/meshroll")
	}
	for _, m := range regexp.MustCompile(`steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)`).FindAllStringSubmatch(string(raw), -1) {
		if !ids[m[1]] {
			t.Errorf("%s: no meshroll step has id %q", m[0], m[1])
		}
		if _, ok := a.Outputs[m[2]]; !ok {
			t.Errorf("%s: the action has no output %q", m[0], m[2])
		}
	}
}
