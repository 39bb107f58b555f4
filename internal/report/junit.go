package report

import (
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"github.com/meshroll/meshroll/internal/analysis"
	"github.com/meshroll/meshroll/internal/config"
	"github.com/meshroll/meshroll/internal/rollout"
	"github.com/meshroll/meshroll/internal/traffic"
)

// junit.xml is one <testsuite name="meshroll"> that CI systems show as test results:
//
//   - each recorded step is a testcase "weights" of class "step N" (the automatic rollback:
//     class "rollback"): it passes, since a step is recorded once its weights are written;
//     a dry-run plan is skipped;
//   - each analysis check of a step is a testcase named after the check. In the step that
//     ended a failed run, the worst verdict of any of its windows decides: fail is a
//     <failure>, error an <error>, no-data <skipped>. A step the run got past passed its
//     analysis, so its checks pass, and a tolerated failed window is told in <system-out>;
//     a check that never got a pass or fail verdict in it is <skipped>;
//   - a failed run always has a failing testcase, so that a CI gate on the test report
//     cannot pass it: when no check failed or errored, the "weights" testcase of the step
//     during which the run ended fails with the reason, or, when the run ended outside a
//     recorded step, a testcase for the step it could not write ("step N+1"), else
//     "preflight" (invalid runs) or "run" of class "meshroll".

type junitSuite struct {
	XMLName    xml.Name        `xml:"testsuite"`
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// junitXML builds junit.xml. Every string from the result is redacted before encoding, so
// that XML escaping cannot hide a secret from the final redaction of the bytes.
func junitXML(res rollout.Result, red redactor) ([]byte, error) {
	text := func(s string) string { return cleanText(red.String(s)) }
	msg := func(s string) string { return oneLine(red, s, maxReason) }
	failedAt := failedStep(res)

	var cases []junitCase
	weightsOf := map[int]int{} // index in res.Steps → index of its "weights" testcase
	for i, s := range res.Steps {
		class := "step " + fmt.Sprint(s.Index)
		if s.Action == rollout.ActionRollback {
			class = "rollback"
		}
		weights := junitCase{
			Classname: class, Name: "weights", Time: seconds(span(s.StartedAt, stepEnd(res, i))),
			SystemOut: text(describeStep(s)),
		}
		if s.Action == rollout.ActionPlan {
			weights.Skipped = &junitMessage{Message: "dry run: planned, not written"}
		}
		weightsOf[i] = len(cases)
		cases = append(cases, weights)
		cases = append(cases, checkCases(s, class, i == failedAt, text, msg)...)
	}

	if failed(res.Outcome) && !anyFailed(cases) {
		reason := msg(res.Reason)
		if reason == "" {
			reason = string(res.Outcome)
		}
		fail := &junitMessage{Message: reason, Text: text(res.Reason)}
		if failedAt >= 0 {
			cases[weightsOf[failedAt]].Failure = fail
		} else {
			cases = append(cases, unrecordedFailure(res, fail))
		}
	}

	suite := junitSuite{
		Name:  "meshroll",
		Tests: len(cases),
		Time:  seconds(span(res.StartedAt, res.FinishedAt)),
		Cases: cases,
		Properties: []junitProperty{
			{"result", string(res.Outcome)},
			{"mode", string(res.Mode)},
			{objectProperty(res), text(res.Namespace + "/" + objectName(res))},
			{"route", text(res.Route)},
			{"analysis", fmt.Sprint(res.Analysis)},
		},
	}
	if !res.StartedAt.IsZero() {
		suite.Timestamp = res.StartedAt.UTC().Format(time.RFC3339)
	}
	for _, c := range cases {
		switch {
		case c.Failure != nil:
			suite.Failures++
		case c.Error != nil:
			suite.Errors++
		case c.Skipped != nil:
			suite.Skipped++
		}
	}
	out, err := xml.MarshalIndent(suite, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode the JUnit report: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// checkCases returns one testcase per check of a step, in the order the checks first
// appear in its windows.
func checkCases(s rollout.Step, class string, endedRun bool, text, msg func(string) string) []junitCase {
	var names []string
	byCheck := map[string][]windowResult{}
	for _, w := range s.Windows {
		for _, r := range w.Results {
			if _, seen := byCheck[r.Check]; !seen {
				names = append(names, r.Check)
			}
			byCheck[r.Check] = append(byCheck[r.Check], windowResult{w.At, r})
		}
	}
	cases := make([]junitCase, 0, len(names))
	for _, name := range names {
		rs := byCheck[name]
		c := junitCase{Classname: class, Name: text(name), Time: seconds(0), SystemOut: text(windowLog(rs))}
		if endedRun {
			if worst := worstOf(rs); worst.Verdict != analysis.VerdictPass {
				m := &junitMessage{Message: msg(worst.Message), Text: text(worst.Message)}
				switch worst.Verdict {
				case analysis.VerdictFail:
					c.Failure = m
				case analysis.VerdictError:
					c.Error = m
				default:
					c.Skipped = m
				}
			}
		} else if !judgedOnce(rs) {
			last := rs[len(rs)-1].Result
			c.Skipped = &junitMessage{Message: msg(fmt.Sprintf("not judged in any of %d windows: %s", len(rs), last.Message))}
		} else if n := notPassed(rs); n > 0 {
			c.SystemOut = text(fmt.Sprintf("passed: the step passed its analysis; %d of %d windows did not pass and were tolerated\n", n, len(rs)) + windowLog(rs))
		}
		cases = append(cases, c)
	}
	return cases
}

type windowResult struct {
	At time.Time
	analysis.Result
}

// worstOf returns the latest result with the worst verdict: fail, error, no-data, pass.
func worstOf(rs []windowResult) analysis.Result {
	rank := map[analysis.Verdict]int{analysis.VerdictFail: 3, analysis.VerdictError: 2, analysis.VerdictNoData: 1}
	worst := rs[0].Result
	for _, r := range rs[1:] {
		if rank[r.Verdict] >= rank[worst.Verdict] {
			worst = r.Result
		}
	}
	return worst
}

// notPassed counts the windows in which a check did not pass.
func notPassed(rs []windowResult) int {
	n := 0
	for _, r := range rs {
		if r.Verdict != analysis.VerdictPass {
			n++
		}
	}
	return n
}

// judgedOnce reports whether a check passed or failed in at least one window.
func judgedOnce(rs []windowResult) bool {
	for _, r := range rs {
		if r.Verdict == analysis.VerdictPass || r.Verdict == analysis.VerdictFail {
			return true
		}
	}
	return false
}

// windowLog lists a check's windows for <system-out>: time, values, verdict, message.
func windowLog(rs []windowResult) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s canary %s stable %s (threshold %s): %s", r.At.UTC().Format(time.RFC3339),
			analysis.Format(r.Canary), analysis.Format(r.Stable), r.Threshold, r.Verdict)
		if r.Message != "" {
			b.WriteString(": " + r.Message)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// describeStep is a step's weights for <system-out>.
func describeStep(s rollout.Step) string {
	after := traffic.DescribeWeights(s.After)
	switch {
	case s.Action == rollout.ActionPlan && !s.Changed:
		return "planned: " + after + " (already in place)"
	case s.Action == rollout.ActionPlan:
		return "planned: " + traffic.DescribeChange(s.Before, s.After)
	case !s.Changed:
		return after + " (already in place, nothing written)"
	}
	return traffic.DescribeChange(s.Before, s.After)
}

func anyFailed(cases []junitCase) bool {
	for _, c := range cases {
		if c.Failure != nil || c.Error != nil {
			return true
		}
	}
	return false
}

// unrecordedFailure is the failing testcase of a run that ended outside a recorded step.
func unrecordedFailure(res rollout.Result, fail *junitMessage) junitCase {
	c := junitCase{Classname: "meshroll", Name: "run", Time: seconds(0), Failure: fail}
	if res.Outcome == rollout.Invalid {
		c.Name = "preflight"
	}
	for i := len(res.Steps) - 1; i >= 0; i-- {
		if s := res.Steps[i]; s.Action == rollout.ActionSet {
			if s.Index < s.Of {
				c.Classname, c.Name = "step "+fmt.Sprint(s.Index+1), "weights"
			}
			break
		}
	}
	return c
}

// seconds writes a duration as JUnit's time attribute.
func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// objectProperty is the JUnit property that names the routing object: virtualService, or
// httpRoute.
func objectProperty(res rollout.Result) string {
	if kind, _ := res.Object(); kind == config.KindHTTPRoute {
		return "httpRoute"
	}
	return "virtualService"
}

func objectName(res rollout.Result) string {
	_, name := res.Object()
	return name
}
