package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr(v float64) *float64 { return &v }

// problems returns each problem of a Load error as one string.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load error = %v, want one matching ErrInvalid", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Load error = %#v, want an errors.Join", err)
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

func TestChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []Check
	}{
		{name: "empty", text: "  \n"},
		{name: "null", text: "null"},
		{name: "empty list", text: "[]"},
		{
			name: "YAML",
			text: `
- name: error-rate
  query: sum(rate(http_errors_total{workload="{{.CanaryWorkload}}"}[{{.Interval}}]))
  max: 5
- name: queue-depth-2
  query: max(queue_depth{namespace="{{.Namespace}}"})
  min: 0
  max: 1.5e3
`,
			want: []Check{
				{Name: "error-rate", Query: `sum(rate(http_errors_total{workload="{{.CanaryWorkload}}"}[{{.Interval}}]))`, Max: ptr(5)},
				{Name: "queue-depth-2", Query: `max(queue_depth{namespace="{{.Namespace}}"})`, Min: ptr(0), Max: ptr(1500)},
			},
		},
		{
			name: "JSON",
			text: `[{"name":"cpu","query":"avg(cpu{pod=~\"{{.CanaryWorkload}}-.*\"})","min":-1,"max":0.8}]`,
			want: []Check{{Name: "cpu", Query: `avg(cpu{pod=~"{{.CanaryWorkload}}-.*"})`, Min: ptr(-1), Max: ptr(0.8)}},
		},
		{
			name: "explicit null bound",
			text: `[{name: only-max, query: "vector(1)", min: null, max: 2}]`,
			want: []Check{{Name: "only-max", Query: "vector(1)", Max: ptr(2)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(analysis("MESHROLL_CHECKS=" + tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Analysis.Checks); diff != "" {
				t.Errorf("Analysis.Checks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChecksInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []string // every problem, in order
	}{
		{
			name: "not YAML",
			text: "- name: [unclosed",
			want: []string{"MESHROLL_CHECKS: failed to parse the checks as YAML or JSON: yaml: line 1: did not find expected ',' or ']'"},
		},
		{
			name: "not a list",
			text: `{name: x, query: "vector(1)", max: 1}`,
			want: []string{"MESHROLL_CHECKS: the checks must be a list of {name, query, min, max}, e.g. [{name: error-rate, query: 'sum(...)', max: 1}]"},
		},
		{
			name: "entry not a mapping",
			text: `["vector(1)"]`,
			want: []string{"MESHROLL_CHECKS: check 1: must be a mapping with name, query and min and/or max"},
		},
		{
			name: "duplicate keys in YAML, one line",
			text: "- name: a\n  name: b\n  query: vector(1)\n  max: 1\n- {name: c, max: 1, max: 2}\n",
			want: []string{`MESHROLL_CHECKS: failed to parse the checks as YAML or JSON: yaml: unmarshal errors: line 2: key "name" already set in map; line 5: key "max" already set in map`},
		},
		{
			name: "every problem of every entry, named",
			text: `
- name: Bad_Name
  query: vector(1)
  max: 1
- name: no-bound
  query: vector(1)
- query: vector(1)
  min: 1
- name: no-query
  max: 1
- name: wrong-types
  query: 5
  min: "1"
  max: [1]
- name: typo
  query: vector(1)
  maximum: 1
- name: upside-down
  query: vector(1)
  min: 5
  max: 1
- name: no-bound
  query: vector(1)
  max: 2
- name: success-rate
  query: vector(1)
  min: 1
- name: mtls
  query: vector(1)
  min: 1
`,
			want: []string{
				"MESHROLL_CHECKS: check 1: name \"Bad_Name\" may hold only lowercase letters, digits and '-'",
				"MESHROLL_CHECKS: check 2 (no-bound): set min, max or both; a check without a bound can never fail",
				"MESHROLL_CHECKS: check 3: name is required",
				"MESHROLL_CHECKS: check 4 (no-query): query is required",
				"MESHROLL_CHECKS: check 5 (wrong-types): max must be a number, not a list",
				`MESHROLL_CHECKS: check 5 (wrong-types): min must be a number, not the string "1"`,
				"MESHROLL_CHECKS: check 5 (wrong-types): query must be a string, not 5",
				`MESHROLL_CHECKS: check 6 (typo): unknown field "maximum"; the fields are name, query, min, max`,
				"MESHROLL_CHECKS: check 6 (typo): set min, max or both; a check without a bound can never fail",
				"MESHROLL_CHECKS: check 7 (upside-down): min 5 is greater than max 1; no value could pass",
				"MESHROLL_CHECKS: check 8 (no-bound): name is already used by check 2; names must be unique",
				"MESHROLL_CHECKS: check 9 (success-rate): name is taken by a built-in check; choose another",
				"MESHROLL_CHECKS: check 10 (mtls): name is taken by a built-in check; choose another",
			},
		},
		{
			name: "JSON with a wrong type and a duplicate",
			text: `[{"name":"a","query":"vector(1)","min":"x"},{"name":"a","query":"vector(1)","max":true}]`,
			want: []string{
				`MESHROLL_CHECKS: check 1 (a): min must be a number, not the string "x"`,
				"MESHROLL_CHECKS: check 2 (a): max must be a number, not true",
				"MESHROLL_CHECKS: check 2 (a): name is already used by check 1; names must be unique",
			},
		},
		{
			name: "template does not parse",
			text: `[{name: broken, query: "sum(x{a=\"{{.CanaryWorkload\"})", max: 1}]`,
			want: []string{`MESHROLL_CHECKS: check 1 (broken): query is not a valid template: template: broken:1: bad character U+0022 '"'`},
		},
		{
			name: "missing key is an error, not <no value>",
			text: `[{name: typo-key, query: "sum(x{a=\"{{.CanaryWorkloud}}\"})", max: 1}]`,
			want: []string{`MESHROLL_CHECKS: check 1 (typo-key): query cannot be rendered (the keys are .Namespace, .CanaryWorkload, .StableWorkload, .Reporter, .Interval): template: typo-key:1:11: {{.CanaryWorkloud}}: map has no entry for key "CanaryWorkloud"`},
		},
		{
			name: "only field placeholders",
			text: `[{name: fn, query: "sum(x{a=\"{{printf \"%s\" .CanaryWorkload}}\"})", max: 1}, {name: cond, query: "{{if .Namespace}}x{{end}}", max: 1}, {name: def, query: "{{define \"x\"}}y{{end}}z", max: 1}]`,
			want: []string{
				`MESHROLL_CHECKS: check 1 (fn): query is not a valid template: template: fn:1: function "printf" not defined`,
				`MESHROLL_CHECKS: check 2 (cond): query is not a valid template: template: cond:1:5: {{if .Namespace}}x{{end}} is not supported; use only {{.Field}} placeholders such as {{.CanaryWorkload}}`,
				`MESHROLL_CHECKS: check 3 (def): query is not a valid template: template: def: define, block and template actions are not supported; use only {{.Field}} placeholders`,
			},
		},
		{
			name: "renders to nothing",
			text: `[{name: blank, query: "{{/* nothing */}}", max: 1}]`,
			want: []string{"MESHROLL_CHECKS: check 1 (blank): query renders to nothing"},
		},
		{
			name: "infinite bound",
			text: `[{name: inf, query: "vector(1)", max: 1e999}]`,
			want: []string{"MESHROLL_CHECKS: check 1 (inf): max must be a number, not the string \"1e999\""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(analysis("MESHROLL_CHECKS=" + tt.text))
			if diff := cmp.Diff(tt.want, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// The checks' problems come with every other problem of the input, in one error.
func TestChecksReportedWithEveryOtherProblem(t *testing.T) {
	t.Parallel()
	_, err := Load(analysis("MESHROLL_CHECKS=[{name: x, query: vector(1)}]", "MESHROLL_MIN_SUCCESS_RATE=101", "MESHROLL_WIEGHT=1"))
	want := []string{
		"MESHROLL_MIN_SUCCESS_RATE=101: must be a percentage above 0 and at most 100, e.g. 99.5, or empty for no such guardrail",
		"MESHROLL_CHECKS: check 1 (x): set min, max or both; a check without a bound can never fail",
		"MESHROLL_WIEGHT is not a meshroll variable: did you mean MESHROLL_WEIGHT?",
	}
	if diff := cmp.Diff(want, problems(t, err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	data := QueryData{Namespace: "shop", CanaryWorkload: "cart-v2", StableWorkload: "cart-v1", Reporter: "source", Interval: "91s"}
	tests := []struct {
		name    string
		check   Check
		data    QueryData
		want    string
		wantErr string
	}{
		{
			name:  "every key, trimmed",
			check: Check{Name: "all", Query: ` {{.Namespace}}|{{.CanaryWorkload}}|{{.StableWorkload}}|{{.Reporter}}|{{.Interval}} `},
			data:  data,
			want:  "shop|cart-v2|cart-v1|source|91s",
		},
		{
			name:  "values are not templates",
			check: Check{Name: "nested", Query: `{{.CanaryWorkload}}`},
			data:  QueryData{CanaryWorkload: "{{.Namespace}}"},
			want:  "{{.Namespace}}",
		},
		{
			name:    "a query Load would reject",
			check:   Check{Name: "typo", Query: `{{.Nope}}`},
			data:    data,
			wantErr: `template: typo:1:2: {{.Nope}}: map has no entry for key "Nope"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.check.Render(tt.data)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Render error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
		})
	}
}

// Credentials are never echoed, in any problem about them or near them.
func TestCredentialsNotEchoed(t *testing.T) {
	t.Parallel()
	_, err := Load(analysis("MESHROLL_PROMETHEUS_URL=ftp://admin:hunter22@prometheus:9090", "MESHROLL_PROMETHEUS_TOKEN=t0ken-value",
		"MESHROLL_PROMETHEUS_PASSWORD=pa55word", "MESHROLL_PROMETHEUS_HEADERS=Authorization: Bearer other-secret\nX-Split: line\rbreak-secret"))
	got := problems(t, err)
	want := []string{
		"MESHROLL_PROMETHEUS_URL: not an absolute http(s) URL; use the Prometheus base URL, e.g. https://prometheus.example.com, or set MESHROLL_PROMETHEUS_SERVICE instead (e.g. istio-system/prometheus:9090) for a Prometheus inside the cluster",
		"MESHROLL_PROMETHEUS_HEADERS: line 2: the value of X-Split holds a carriage return or NUL; remove it",
		"MESHROLL_PROMETHEUS_TOKEN is set together with MESHROLL_PROMETHEUS_USERNAME or MESHROLL_PROMETHEUS_PASSWORD: set either a bearer token or a username and password for Prometheus, not both",
		"MESHROLL_PROMETHEUS_USERNAME is required: MESHROLL_PROMETHEUS_PASSWORD is set, and basic auth needs a username too; set it, or unset MESHROLL_PROMETHEUS_PASSWORD",
		"MESHROLL_PROMETHEUS_HEADERS: sets Authorization, which conflicts with MESHROLL_PROMETHEUS_TOKEN or MESHROLL_PROMETHEUS_USERNAME; set the credentials one way only",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"hunter22", "t0ken-value", "pa55word", "other-secret", "break-secret"} {
		if text := strings.Join(got, "\n"); strings.Contains(text, secret) {
			t.Errorf("a problem holds the secret %q:\n%s", secret, text)
		}
	}
	// The invalid header values are secrets all the same, for the report of the rejected run.
	secrets := Reporting(analysis("MESHROLL_PROMETHEUS_HEADERS=X-Split: line\rbreak-secret")).Secrets()
	if diff := cmp.Diff([]string{"line\rbreak-secret"}, secrets); diff != "" {
		t.Errorf("Reporting(...).Secrets() (-want +got):\n%s", diff)
	}
}
