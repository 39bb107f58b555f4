package main

// Packaging tests of the GitLab CI/CD component, templates/meshroll.yml: its inputs are the
// action's (read from action.yml at run time, so that a new input fails here until the
// component has it too), its job passes each to meshroll as action.yml does, and the
// examples and docs that include it give valid input.

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/report"
)

const componentPath = "templates/meshroll.yml"

// componentOwnInputs are the component's inputs that are not the action's: what a GitLab
// job needs besides meshroll's variables.
var componentOwnInputs = []string{"image", "job-name", "resource-group", "stage"}

// componentHeader is the spec document of the component. Parsed strictly: an unknown key
// fails the test. options is left out on purpose: meshroll's config is the only validator
// of input, and an input limited to options could not be empty (meshroll's default).
type componentHeader struct {
	Spec struct {
		Inputs map[string]componentInput `json:"inputs"`
	} `json:"spec"`
}

type componentInput struct {
	Description string  `json:"description"`
	Type        string  `json:"type"`
	Default     *string `json:"default"` // nil: mandatory
	Regex       string  `json:"regex"`
}

// componentJob is the component's one job. Parsed strictly, so that rules, when, needs and
// the like, which belong to the includer, fail the test.
type componentJob struct {
	Stage string `json:"stage"`
	Image struct {
		Name       string   `json:"name"`
		Entrypoint []string `json:"entrypoint"`
	} `json:"image"`
	ResourceGroup string            `json:"resource_group"`
	Variables     map[string]string `json:"variables"`
	Script        []string          `json:"script"`
	Artifacts     struct {
		When     string   `json:"when"`
		ExposeAs string   `json:"expose_as"`
		Paths    []string `json:"paths"`
		Reports  struct {
			Dotenv string `json:"dotenv"`
			JUnit  string `json:"junit"`
		} `json:"reports"`
	} `json:"artifacts"`
}

type component struct {
	inputs  map[string]componentInput
	jobName string // the job's key, as written
	job     componentJob
	jobText string // the job document, as written
}

var (
	docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)
	// interpolation is any $[[ … ]] block; plainRef the only form the component uses: a bare
	// input, no functions (expand_vars would write a secret into the configuration).
	interpolation = regexp.MustCompile(`\$\[\[.*?\]\]`)
	plainRef      = regexp.MustCompile(`^\$\[\[ inputs\.([a-z0-9-]+) \]\]$`)
	// includeOfComponent is how examples and docs include it: from the same GitLab instance.
	includeOfComponent = regexp.MustCompile(`^\$CI_SERVER_FQDN/[^@\s]+/meshroll@\S+$`)
)

func componentRef(name string) string { return "$[[ inputs." + name + " ]]" }

func readComponent(t *testing.T) component {
	t.Helper()
	raw, err := os.ReadFile(componentPath)
	if err != nil {
		t.Fatal(err)
	}
	parts := docSeparator.Split(string(raw), -1)
	if len(parts) != 2 {
		t.Fatalf("%s: %d YAML documents, want 2 (the spec header, ---, the job)", componentPath, len(parts))
	}
	var h componentHeader
	if err := yaml.UnmarshalStrict([]byte(parts[0]), &h); err != nil {
		t.Fatalf("%s, header: %v", componentPath, err)
	}
	var jobs map[string]componentJob
	if err := yaml.UnmarshalStrict([]byte(parts[1]), &jobs); err != nil {
		t.Fatalf("%s, job: %v", componentPath, err)
	}
	if len(jobs) != 1 {
		t.Fatalf("%s: %d jobs, want 1", componentPath, len(jobs))
	}
	c := component{inputs: h.Spec.Inputs, jobText: parts[1]}
	for name, job := range jobs {
		c.jobName, c.job = name, job
	}
	return c
}

// componentEnv is the environment GitLab gives the component's job when it is included with
// these inputs, before it expands $NAME references (meshroll sees the values of the CI/CD
// variables they name). Each problem GitLab would refuse the pipeline for is reported.
func componentEnv(t *testing.T, c component, given map[string]string) map[string]string {
	t.Helper()
	for name, value := range given {
		in, ok := c.inputs[name]
		if !ok {
			t.Errorf("input %q: the component has no such input", name)
			continue
		}
		if in.Regex != "" && !regexp.MustCompile(in.Regex).MatchString(value) {
			t.Errorf("input %s: %q does not match the component's regex %s", name, value, in.Regex)
		}
	}
	for name, in := range c.inputs {
		if _, ok := given[name]; !ok && in.Default == nil {
			t.Errorf("input %s is mandatory and not given", name)
		}
	}
	env := map[string]string{}
	for variable, value := range c.job.Variables {
		m := plainRef.FindStringSubmatch(value)
		if m == nil {
			t.Fatalf("variables: %s: %q is not an input reference", variable, value)
		}
		switch v, set := given[m[1]]; {
		case set:
			env[variable] = v
		case c.inputs[m[1]].Default != nil:
			env[variable] = *c.inputs[m[1]].Default
		}
	}
	return env
}

// componentInputs reads an include's inputs: strings only, because every input of the
// component is a string (GitLab refuses a number or a boolean for one).
func componentInputs(t *testing.T, where string, inputs map[string]any) map[string]string {
	t.Helper()
	given := map[string]string{}
	for name, v := range inputs {
		s, ok := v.(string)
		if !ok {
			t.Errorf("%s: input %s: %v is not a string; quote it (%s: \"%v\")", where, name, v, name, v)
			s = fmt.Sprint(v)
		}
		given[name] = s
	}
	return given
}

func TestComponentInputsMatchAction(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	c := readComponent(t)
	for name, want := range a.Inputs {
		got, ok := c.inputs[name]
		if !ok {
			t.Errorf("input %q of action.yml is not an input of %s: add it, with the same default", name, componentPath)
			continue
		}
		if got.Default == nil || want.Default == nil || *got.Default != *want.Default {
			t.Errorf("input %q: default %s, action.yml's %s; give the same (an empty input means meshroll's default)", name, quoted(got.Default), quoted(want.Default))
		}
		if got.Type != "" && got.Type != "string" {
			t.Errorf("input %q: type %s; want string, as the action's inputs are (an empty one means meshroll's default)", name, got.Type)
		}
		if got.Description == "" {
			t.Errorf("input %q has no description", name)
		}
		if g, w := strings.HasPrefix(got.Description, "Required."), strings.HasPrefix(want.Description, "Required."); g != w {
			t.Errorf("input %q: description starts with \"Required.\": %v, action.yml's: %v", name, g, w)
		}
	}
	for name, in := range c.inputs {
		if _, ok := a.Inputs[name]; ok {
			continue
		}
		if !slices.Contains(componentOwnInputs, name) {
			t.Errorf("input %q is neither an input of action.yml nor one of the component's own %v", name, componentOwnInputs)
		}
		if in.Description == "" {
			t.Errorf("input %q has no description", name)
		}
	}
	for _, name := range componentOwnInputs {
		if _, ok := c.inputs[name]; !ok {
			t.Errorf("the component has no input %q", name)
		}
	}
	// No default of the image yet: it must name an image of the same version as the
	// component, which the includer publishes (docs/ci.md, "Pinning a prebuilt image").
	if in := c.inputs["image"]; in.Default != nil && !strings.HasSuffix(*in.Default, "-shell") {
		t.Errorf("input image: default %q is not the shell target's image (…-shell)", *in.Default)
	}
	for name, in := range c.inputs {
		if in.Regex == "" {
			continue
		}
		re, err := regexp.Compile(in.Regex)
		if err != nil {
			t.Errorf("input %q: regex: %v", name, err)
			continue
		}
		if in.Default != nil && !re.MatchString(*in.Default) {
			t.Errorf("input %q: its default %q does not match its regex %s; GitLab refuses that", name, *in.Default, in.Regex)
		}
	}
}

func quoted(s *string) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%q", *s)
}

// The job passes every input to meshroll exactly as the env of action.yml's run step does, and
// every variable of config.Variables() has one.
func TestComponentJobPassesEveryInput(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	c := readComponent(t)
	want := map[string]string{}
	for variable, value := range a.Runs.Env {
		name := strings.TrimSuffix(strings.TrimPrefix(value, "${{ inputs."), " }}")
		want[variable] = componentRef(name)
	}
	for _, variable := range config.Variables() {
		if got, ok := want[variable]; !ok || got != componentRef(inputName(variable)) {
			t.Errorf("%s: action.yml passes %q; want input %q (TestActionInputsMatchConfig says more)", variable, got, inputName(variable))
		}
	}
	if diff := cmp.Diff(want, c.job.Variables); diff != "" {
		t.Errorf("%s: variables differ from the env of action.yml's run step (-action +component):\n%s", componentPath, diff)
	}

	used := map[string]bool{}
	for _, block := range interpolation.FindAllString(c.jobName+"\n"+c.jobText, -1) {
		m := plainRef.FindStringSubmatch(block)
		if m == nil {
			t.Errorf("%s: %s: write an input as %s, without functions", componentPath, block, componentRef("name"))
			continue
		}
		if _, ok := c.inputs[m[1]]; !ok {
			t.Errorf("%s: %s: no such input", componentPath, block)
		}
		used[m[1]] = true
	}
	for name := range c.inputs {
		if !used[name] {
			t.Errorf("%s: input %q is never used", componentPath, name)
		}
	}

	j := c.job
	for _, check := range []struct{ what, got, want string }{
		{"the job's name", c.jobName, componentRef("job-name")},
		{"stage", j.Stage, componentRef("stage")},
		{"image: name", j.Image.Name, componentRef("image")},
		{"resource_group", j.ResourceGroup, componentRef("resource-group")},
	} {
		if check.got != check.want {
			t.Errorf("%s: %s is %q, want %q", componentPath, check.what, check.got, check.want)
		}
	}
	if !slices.Equal(j.Image.Entrypoint, []string{""}) {
		t.Errorf("%s: image: entrypoint %q, want [\"\"] so that GitLab runs the script with the image's sh", componentPath, j.Image.Entrypoint)
	}
	if !slices.Equal(j.Script, []string{"meshroll"}) {
		t.Errorf("%s: script %q, want [meshroll]", componentPath, j.Script)
	}
}

// The job keeps meshroll's files whatever the result, gives GitLab its reports and shows the
// summary in the merge request.
func TestComponentArtifacts(t *testing.T) {
	t.Parallel()
	c := readComponent(t)
	art := c.job.Artifacts
	dir := componentRef("output-dir")
	if art.When != "always" {
		t.Errorf("artifacts: when %q, want always: a failed canary's files matter most", art.When)
	}
	if art.Reports.Dotenv != dir+"/"+report.OutputsFile {
		t.Errorf("artifacts: reports: dotenv %q, want %s/%s", art.Reports.Dotenv, dir, report.OutputsFile)
	}
	if art.Reports.JUnit != dir+"/"+report.JUnitFile {
		t.Errorf("artifacts: reports: junit %q, want %s/%s", art.Reports.JUnit, dir, report.JUnitFile)
	}
	// expose_as shows a path only when a directory ends in / and no path starts with ./ or
	// holds a variable; the output-dir input's regex keeps its values so.
	if !slices.Contains(art.Paths, dir+"/") && !slices.Contains(art.Paths, dir+"/"+report.SummaryFile) {
		t.Errorf("artifacts: paths %q hold neither %s/ nor %s/%s", art.Paths, dir, dir, report.SummaryFile)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9 _-]+$`).MatchString(art.ExposeAs) {
		t.Errorf("artifacts: expose_as %q: want a name of letters, digits, spaces, - and _", art.ExposeAs)
	}
	re := regexp.MustCompile(c.inputs["output-dir"].Regex)
	for _, dir := range []string{"meshroll-out", "out/canary-1", "ci/meshroll_out.2"} {
		if !re.MatchString(dir) {
			t.Errorf("output-dir %q is refused by the input's regex %s", dir, re)
		}
	}
	for _, dir := range []string{"", ".", "./out", "/tmp/out", "out/", "out//x", "$CI_PROJECT_DIR/out", "${DIR}", "out dir"} {
		if re.MatchString(dir) {
			t.Errorf("output-dir %q is accepted by the input's regex %s; the artifacts could not follow it", dir, re)
		}
	}
}

// A secret input of the action (its description says "A secret") takes in the component
// nothing but the name of the CI/CD variable that holds it, so that no secret is written
// in a .gitlab-ci.yml: GitLab expands the job's variable when the job starts.
func TestComponentSecretsComeFromVariables(t *testing.T) {
	t.Parallel()
	a := readAction(t)
	c := readComponent(t)
	secrets := 0
	for name, in := range a.Inputs {
		if !strings.Contains(in.Description, "A secret") {
			continue
		}
		secrets++
		re, err := regexp.Compile(c.inputs[name].Regex)
		if err != nil || c.inputs[name].Regex == "" {
			t.Errorf("input %q is a secret: give it a regex that accepts only empty or a $NAME (%v)", name, err)
			continue
		}
		for _, ok := range []string{"", "$CANARY_KUBECONFIG", "${PROMETHEUS_TOKEN}", "$_x1"} {
			if !re.MatchString(ok) {
				t.Errorf("input %q: regex %s refuses %q", name, re, ok)
			}
		}
		for _, bad := range []string{"apiVersion: v1\nkind: Config\n", "s3cr3t-token", "$A$B", "$A suffix", "$(cat token)", "${A", "$1"} {
			if re.MatchString(bad) {
				t.Errorf("input %q: regex %s accepts %q, a value rather than a variable's name", name, re, bad)
			}
		}
	}
	if secrets < 3 {
		t.Errorf("%d inputs of action.yml say \"A secret\"; want kubeconfig, prometheus-token and prometheus-password at least", secrets)
	}
}

// All defaults arrive together, whatever the mode, as with the action.
func TestComponentDefaultsWorkInEveryMode(t *testing.T) {
	t.Parallel()
	c := readComponent(t)
	for _, mode := range []string{"phase", "progress", "promote", "rollback", "status"} {
		given := map[string]string{"image": "<your-registry>/meshroll:v1-shell", "mode": mode, "virtual-service": "reviews", "stable-subset": "v1", "canary-subset": "v2"}
		plain := map[string]string{"MESHROLL_MODE": mode, "MESHROLL_VIRTUAL_SERVICE": "reviews", "MESHROLL_STABLE_SUBSET": "v1", "MESHROLL_CANARY_SUBSET": "v2"}
		if mode == "phase" {
			given["weight"], plain["MESHROLL_WEIGHT"] = "20", "20"
		}
		want, err := config.Load(environ(plain))
		if err != nil {
			t.Fatalf("mode %s without the component: %v", mode, err)
		}
		got, err := config.Load(environ(componentEnv(t, c, given)))
		if err != nil {
			t.Errorf("mode %s through the component's defaults is rejected: %v", mode, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mode %s: the component's defaults change the configuration (-meshroll +component):\n%s", mode, diff)
		}
	}
}

// componentIncludes returns the includes of the component in a GitLab CI configuration, each
// with the environment its job gets and the job's name.
func componentIncludes(t *testing.T, where string, c component, ci map[string]any) (envs []map[string]string, jobs []string) {
	t.Helper()
	for _, inc := range anyList(ci["include"]) {
		path, _ := mapOf(inc)["component"].(string)
		if path == "" {
			continue
		}
		if !includeOfComponent.MatchString(path) {
			t.Errorf("%s: component %q; want $CI_SERVER_FQDN/<group>/<project>/meshroll@<version>", where, path)
			continue
		}
		given := componentInputs(t, where, mapOf(mapOf(inc)["inputs"]))
		if !strings.HasSuffix(given["image"], "-shell") {
			t.Errorf("%s: input image %q; want the shell target's image (…-shell)", where, given["image"])
		}
		envs = append(envs, componentEnv(t, c, given))
		name := given["job-name"]
		if name == "" {
			name = *c.inputs["job-name"].Default
		}
		jobs = append(jobs, name)
	}
	return envs, jobs
}

// Every YAML block of README.md and docs/*.md that includes the component gives it valid
// input, and README shows one.
func TestComponentSnippetsInDocs(t *testing.T) {
	t.Parallel()
	c := readComponent(t)
	shown := map[string]int{}
	for _, f := range docFiles(t) {
		_, blocks := splitFences(f.text)
		for i, b := range blocks {
			if b.lang != "yaml" || !strings.Contains(b.body, "component:") {
				continue
			}
			where := fmt.Sprintf("%s, code block %d", f.path, i+1)
			var ci map[string]any
			if err := yaml.Unmarshal([]byte(b.body), &ci); err != nil {
				t.Errorf("%s: not YAML: %v", where, err)
				continue
			}
			envs, _ := componentIncludes(t, where, c, ci)
			shown[f.path] += len(envs)
			for _, env := range envs {
				if _, err := config.Load(environ(env)); err != nil {
					t.Errorf("%s: meshroll rejects the component's input: %v", where, err)
				}
			}
		}
	}
	for _, path := range []string{"README.md", "docs/ci.md"} {
		if shown[path] == 0 {
			t.Errorf("%s shows no include of the component", path)
		}
	}
}

// checkGitLabExample holds examples/gitlab/.gitlab-ci.yml to valid input: each include of the
// component and each job of its own that runs meshroll; a job that reads meshroll's outputs
// needs a meshroll job and runs whatever its result.
func checkGitLabExample(t *testing.T) {
	t.Parallel()
	const file = "examples/gitlab/.gitlab-ci.yml"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ci map[string]any
	if err := yaml.Unmarshal(raw, &ci); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	envs, meshrollJobs := componentIncludes(t, file, readComponent(t), ci)
	for i, env := range envs {
		if _, err := config.Load(environ(env)); err != nil {
			t.Errorf("%s: include %d (job %s): meshroll rejects its inputs: %v", file, i+1, meshrollJobs[i], err)
		}
	}
	for name, j := range ci {
		job, ok := j.(map[string]any)
		if !ok || !slices.ContainsFunc(anyList(job["script"]), func(s any) bool { return s == "meshroll" }) {
			continue
		}
		meshrollJobs = append(meshrollJobs, name)
		vars := map[string]string{}
		for k, v := range mapOf(job["variables"]) {
			vars[k] = fmt.Sprint(v)
		}
		if _, err := config.Load(environ(vars)); err != nil {
			t.Errorf("job %s: meshroll rejects its variables: %v", name, err)
		}
		image := mapOf(job["image"])
		if !strings.HasSuffix(fmt.Sprint(image["name"]), "-shell") || fmt.Sprint(image["entrypoint"]) != "[]" {
			t.Errorf("job %s: image %v; want the shell target and entrypoint [\"\"]", name, image)
		}
	}
	if len(meshrollJobs) == 0 {
		t.Fatal("no job runs meshroll")
	}
	reads := 0
	for name, j := range ci {
		job := mapOf(j)
		if !strings.Contains(fmt.Sprint(job["script"]), "MESHROLL_RESULT") {
			continue
		}
		reads++
		if !slices.ContainsFunc(anyList(job["needs"]), func(n any) bool { return slices.Contains(meshrollJobs, fmt.Sprint(n)) }) {
			t.Errorf("job %s reads MESHROLL_RESULT but needs none of the jobs that run meshroll %v", name, meshrollJobs)
		}
		always := job["when"] == "always"
		for _, r := range anyList(job["rules"]) {
			always = always || mapOf(r)["when"] == "always"
		}
		if !always {
			t.Errorf("job %s reads meshroll's result, but without when: always it never runs when the canary fails", name)
		}
	}
	if reads == 0 {
		t.Errorf("%s: no job reads MESHROLL_RESULT (the dotenv report)", file)
	}
}

// docs/ci.md's table of the component's own inputs (input | meaning | default) lists them,
// each with its default.
func TestComponentOwnInputsDocumented(t *testing.T) {
	t.Parallel()
	c := readComponent(t)
	var documented []string
	for _, f := range docFiles(t) {
		for _, tb := range tables(f) {
			if !slices.Equal(tb.header, []string{"input", "meaning", "default"}) {
				continue
			}
			if f.path != "docs/ci.md" {
				t.Errorf("%s has a table of the component's inputs; keep it in docs/ci.md", f.path)
			}
			for i, r := range tb.rows {
				where := fmt.Sprintf("%s:%d", f.path, tb.lines[i])
				if len(r) != 3 {
					t.Errorf("%s: %d cells, want 3", where, len(r))
					continue
				}
				documented = append(documented, r[0])
				in, ok := c.inputs[r[0]]
				switch {
				case !ok:
					t.Errorf("%s: the component has no input %q", where, r[0])
				case in.Default == nil && !strings.Contains(r[2], "mandatory"):
					t.Errorf("%s: input %s has no default; say it is mandatory", where, r[0])
				case in.Default != nil && !strings.Contains("`"+r[2]+"`", "`"+*in.Default+"`"):
					t.Errorf("%s: input %s: default column %q does not give the default `%s`", where, r[0], r[2], *in.Default)
				}
			}
		}
	}
	slices.Sort(documented)
	if diff := cmp.Diff(componentOwnInputs, documented); diff != "" {
		t.Errorf("the component's own inputs in docs/ci.md (-component +docs):\n%s", diff)
	}
}
