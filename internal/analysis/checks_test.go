package analysis

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseChecks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []Check
	}{
		{name: "empty", text: "  \n"},
		{name: "null", text: "null"},
		{name: "empty list", text: "[]", want: []Check{}},
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
			got, err := ParseChecks(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseChecks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseChecksErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []string // every problem, one per line of the joined error
	}{
		{
			name: "not YAML",
			text: "- name: [unclosed",
			want: []string{"failed to parse the checks as YAML or JSON"},
		},
		{
			name: "not a list",
			text: `{name: x, query: "vector(1)", max: 1}`,
			want: []string{"the checks must be a list of {name, query, min, max}"},
		},
		{
			name: "entry not a mapping",
			text: `["vector(1)"]`,
			want: []string{"check 1: must be a mapping with name, query and min and/or max"},
		},
		{
			name: "duplicate key in YAML",
			text: "- name: a\n  name: b\n  query: vector(1)\n  max: 1\n",
			want: []string{"failed to parse the checks as YAML or JSON"},
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
`,
			want: []string{
				"check 1: name \"Bad_Name\" may hold only lowercase letters, digits and '-'",
				"check 2 (no-bound): set min, max or both; a check without a bound can never fail",
				"check 3: name is required",
				"check 4 (no-query): query is required",
				"check 5 (wrong-types): max must be a number, not a list",
				`check 5 (wrong-types): min must be a number, not the string "1"`,
				"check 5 (wrong-types): query must be a string, not 5",
				`check 6 (typo): unknown field "maximum"; the fields are name, query, min, max`,
				"check 6 (typo): set min, max or both; a check without a bound can never fail",
				"check 7 (upside-down): min 5 is greater than max 1; no value could pass",
				"check 8 (no-bound): name is already used by check 2; names must be unique",
				"check 9 (success-rate): name is taken by a built-in check; choose another",
			},
		},
		{
			name: "JSON with a wrong type and a duplicate",
			text: `[{"name":"a","query":"vector(1)","min":"x"},{"name":"a","query":"vector(1)","max":true}]`,
			want: []string{
				`check 1 (a): min must be a number, not the string "x"`,
				"check 2 (a): max must be a number, not true",
				"check 2 (a): name is already used by check 1; names must be unique",
			},
		},
		{
			name: "template does not parse",
			text: `[{name: broken, query: "sum(x{a=\"{{.CanaryWorkload\"})", max: 1}]`,
			want: []string{`check 1 (broken): query is not a valid template: template: broken:1: bad character U+0022 '"'`},
		},
		{
			name: "missing key is an error, not <no value>",
			text: `[{name: typo-key, query: "sum(x{a=\"{{.CanaryWorkloud}}\"})", max: 1}]`,
			want: []string{`check 1 (typo-key): query cannot be rendered (the keys are .Namespace, .CanaryWorkload, .StableWorkload, .Reporter, .Interval): template: typo-key:1:11: {{.CanaryWorkloud}}: map has no entry for key "CanaryWorkloud"`},
		},
		{
			name: "only field placeholders",
			text: `[{name: fn, query: "sum(x{a=\"{{printf \"%s\" .CanaryWorkload}}\"})", max: 1}, {name: cond, query: "{{if .Namespace}}x{{end}}", max: 1}]`,
			want: []string{
				`check 1 (fn): query is not a valid template: template: fn:1: function "printf" not defined`,
				`check 2 (cond): query is not a valid template: template: cond:1:5: {{if .Namespace}}x{{end}} is not supported; use only {{.Field}} placeholders such as {{.CanaryWorkload}}`,
			},
		},
		{
			name: "renders to nothing",
			text: `[{name: blank, query: "{{/* nothing */}}", max: 1}]`,
			want: []string{"check 1 (blank): query renders to nothing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseChecks(tt.text)
			if err == nil {
				t.Fatalf("ParseChecks = %+v, want an error", got)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(tt.want) == 1 && !strings.Contains(tt.want[0], "check ") {
				// Parser messages are the YAML library's: check only ours.
				if !strings.HasPrefix(err.Error(), tt.want[0]) {
					t.Errorf("error %q does not start with %q", err, tt.want[0])
				}
				return
			}
			if diff := cmp.Diff(tt.want, lines); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
