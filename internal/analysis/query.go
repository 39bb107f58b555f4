package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// maxParallelQueries bounds how many queries one window sends at once.
const maxParallelQueries = 8

// Evaluate runs every check at instant at (now when zero) for the canary,
// and for the stable version too for the built-ins. A query that fails gives
// an "error" result; the only error returned (then without a Window) wraps
// ErrUnavailable, when Prometheus could not be reached after the retries, or
// the context's error.
func (a *Analyzer) Evaluate(ctx context.Context, at time.Time) (Window, error) {
	if ctx.Err() != nil {
		// The cause says what stopped the run (a signal, the run's deadline), where ctx.Err()
		// would only say "context canceled".
		return Window{}, fmt.Errorf("failed to evaluate the canary: %w", context.Cause(ctx))
	}
	if err := a.open(ctx); err != nil {
		return Window{}, fmt.Errorf("failed to evaluate the canary: %w", err)
	}
	if at.IsZero() {
		at = time.Now()
	}
	// Role by role (canary, stable, canaryTotal, stableTotal), each in the order of the
	// checks; "" (a check without that query) is not sent.
	n := len(a.checks)
	queries := make([]string, 0, 4*n)
	for role := range 4 {
		for _, c := range a.checks {
			queries = append(queries, c.queries()[role])
		}
	}
	answers, err := a.queryAll(ctx, queries, at, a.windowPolicy())
	if err != nil {
		return Window{}, fmt.Errorf("failed to evaluate the canary: %w", err)
	}
	return Window{At: at, Results: a.judge(answers[:n], answers[n:2*n], answers[2*n:3*n], answers[3*n:])}, nil
}

// Preflight sends every query once, before any traffic moves, and checks that
// the stable workload served requests lately: labels that match nothing would
// otherwise make every window "no data" and the rollout inconclusive. Every
// problem is reported at once; a rejected query wraps ErrQuery, missing
// stable data wraps ErrNoData, refused credentials wrap ErrUnauthorized and
// an unreachable Prometheus wraps ErrUnavailable. Through a proxy, the proxy
// is opened first: its error is returned before any query is sent.
func (a *Analyzer) Preflight(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("failed to check the analysis queries: %w", context.Cause(ctx))
	}
	if err := a.open(ctx); err != nil {
		return fmt.Errorf("failed to check the analysis queries: %w", err)
	}
	type sent struct{ check, side string }
	var queries []string
	var about []sent
	sides := [4]string{"canary", "stable", "canary, all requests", "stable, all requests"}
	for _, c := range a.checks {
		for role, q := range c.queries() {
			if q != "" {
				queries = append(queries, q)
				about = append(about, sent{c.name, sides[role]})
			}
		}
	}
	queries = append(queries, a.stableProbe)
	answers, err := a.queryAll(ctx, queries, time.Now(), a.preflightPolicy())
	if err != nil {
		return fmt.Errorf("failed to check the analysis queries: %w", err)
	}
	var errs []error
	for i, ans := range answers[:len(about)] {
		switch {
		case ans.err == nil || errors.Is(ans.err, ErrNoData):
			// A canary without traffic yet is expected; no data is judged per window.
		default:
			errs = append(errs, fmt.Errorf("check %s (%s): %w", about[i].check, about[i].side, ans.err))
		}
	}
	probe := answers[len(about)]
	switch {
	case errors.Is(probe.err, ErrNoData):
		s := a.settings
		errs = append(errs, fmt.Errorf("no requests recorded for the stable workload in the last %s (query: %s); "+
			"check MESHROLL_STABLE_WORKLOAD (destination_workload=%q), MESHROLL_REPORTER (reporter=%q) and "+
			"MESHROLL_NAMESPACE (destination_workload_namespace=%q), and that Prometheus scrapes the mesh's Istio metrics: %w",
			humanDuration(max(s.Interval, preflightWindow)), a.stableProbe, s.StableWorkload, s.Reporter, s.Namespace, probe.err))
	case probe.err != nil:
		errs = append(errs, fmt.Errorf("stable request volume: %w", probe.err))
	}
	if len(errs) > 0 {
		return redactErr(fmt.Errorf("failed to check the analysis queries: %w", errors.Join(errs...)), a.secrets)
	}
	return nil
}

// queryAll runs the queries concurrently ("" is skipped and answers no
// data). It returns an error only when Prometheus is unavailable, refuses the
// credentials (the same for every query) or ctx ends; then the queries still
// running are abandoned.
func (a *Analyzer) queryAll(ctx context.Context, queries []string, at time.Time, p retryPolicy) ([]answer, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	answers := make([]answer, len(queries))
	slots := make(chan struct{}, maxParallelQueries)
	var wg sync.WaitGroup
	for i, q := range queries {
		if q == "" {
			answers[i] = answer{err: ErrNoData}
			continue
		}
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				answers[i] = answer{err: context.Cause(ctx)}
				return
			}
			v, err := a.query(ctx, q, at, p)
			answers[i] = answer{value: v, err: err}
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnauthorized) {
				cancel(err) // one is enough: the others would wait as long, or be refused too
			}
		})
	}
	wg.Wait()
	// The first unavailable or refused query's error, or the caller's reason to stop.
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return answers, nil
}

// preflightAttempt is the least time one preflight attempt waits for an answer. Nothing has
// moved yet, so a Prometheus that is slow for a moment is waited for, not taken for down.
const preflightAttempt = 10 * time.Second

// retryPolicy bounds one query's attempts: each may take attempt, all of them total.
type retryPolicy struct {
	attempt, total time.Duration
	totalName      string // how the reason names the total, e.g. "half the analysis interval"
}

// windowPolicy answers a window within half the interval, so that the next window starts on
// time: one slow answer there costs one window, which the failure threshold tolerates.
func (a *Analyzer) windowPolicy() retryPolicy {
	return retryPolicy{attempt: a.budget, total: a.budget, totalName: "half the analysis interval"}
}

// preflightPolicy gives every attempt of a preflight query at least preflightAttempt and
// Retries attempts in all: one slow or lost answer is tried again rather than failing the run.
func (a *Analyzer) preflightPolicy() retryPolicy {
	attempt := max(a.budget, preflightAttempt)
	return retryPolicy{attempt: attempt, total: time.Duration(a.settings.Retries) * attempt, totalName: "the preflight's time"}
}

// query runs one instant query with retries and returns its single value.
// Network errors, 5xx, 429, Prometheus timeouts and attempts that got no
// answer in time are retried with exponential backoff within the policy; a
// rejected query (bad_data) or refused credentials are not. Every error names
// the query.
func (a *Analyzer) query(ctx context.Context, q string, at time.Time, p retryPolicy) (float64, error) {
	val, err := a.queryValue(ctx, q, at, p)
	if err != nil {
		return 0, err
	}
	v, err := single(val, q)
	return v, redactErr(err, a.secrets)
}

// queryValue runs one instant query with the retries of query and returns what Prometheus
// answered.
func (a *Analyzer) queryValue(ctx context.Context, q string, at time.Time, p retryPolicy) (model.Value, error) {
	budget, cancel := context.WithTimeout(ctx, p.total)
	defer cancel()
	backoff := a.settings.Backoff
	var last error
	attempts := 0
	for {
		attempts++
		val, err := a.attempt(budget, q, at, p.attempt)
		if err == nil {
			return val, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("failed to run query %s: %w", q, context.Cause(ctx))
		}
		retry, why := classify(err.err, err.status)
		if err.timedOut {
			retry, why = true, fmt.Errorf("no answer within %s", humanDuration(err.waited))
		}
		if err.status == http.StatusUnauthorized || err.status == http.StatusForbidden {
			return nil, redactErr(a.refused(q, why, err.byAPIServer), a.secrets)
		}
		if !retry {
			return nil, redactErr(fmt.Errorf("failed to run query %s: %w", q, why), a.secrets)
		}
		last = why
		if attempts >= a.settings.Retries || budget.Err() != nil {
			break
		}
		if deadline, ok := budget.Deadline(); ok && time.Until(deadline) < backoff {
			break // the next try would start after the budget ends
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-budget.Done():
		}
		timer.Stop()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("failed to run query %s: %w", q, context.Cause(ctx))
		}
		backoff *= 2
	}
	gaveUp := "after " + plural(attempts, "attempt")
	if budget.Err() != nil {
		gaveUp = fmt.Sprintf("after %s in %s (%s)", plural(attempts, "attempt"), humanDuration(p.total), p.totalName)
	}
	return nil, redactErr(a.unreachable(q, gaveUp, last), a.secrets)
}

// attemptError is a failed attempt: the client's error and HTTP status, or that the attempt
// (not the caller) ran out of time, after how long.
type attemptError struct {
	err         error
	status      int
	byAPIServer bool // the Kubernetes API server answered the error, not Prometheus
	timedOut    bool
	waited      time.Duration
}

// attempt sends the query once, giving it at most limit within ctx.
func (a *Analyzer) attempt(ctx context.Context, q string, at time.Time, limit time.Duration) (model.Value, *attemptError) {
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	actx, status := withStatus(actx)
	prom := a.prometheus()
	if prom == nil {
		return nil, &attemptError{err: errNotOpen}
	}
	val, _, _, err := prom.Query(actx, q, at)
	if err == nil {
		return val, nil
	}
	var apiErr *v1.Error
	byAPIServer := false
	if errors.As(err, &apiErr) {
		who, _ := answeredBy(apiErr.Detail)
		byAPIServer = who == apiServer
	}
	return nil, &attemptError{err: err, status: *status, byAPIServer: byAPIServer, timedOut: actx.Err() != nil, waited: time.Since(start).Round(100 * time.Millisecond)}
}

// classify says whether a failed query is worth another try and why it
// failed.
func classify(err error, status int) (retry bool, why error) {
	var apiErr *v1.Error
	if !errors.As(err, &apiErr) {
		// No HTTP answer (refused, reset, DNS, TLS, timeout): the network. The URL the
		// client puts first (`Post "http://…/api/v1/query": `) is left out: the message
		// names where Prometheus is already.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			return true, urlErr.Err
		}
		return true, err
	}
	// Prometheus's own errors carry a type and a message; anything else (a proxy's
	// 502, a 404 for a wrong path, the API server's answers through its service
	// proxy) only a status and a body.
	why = fmt.Errorf("%s: %s", apiErr.Type, apiErr.Msg)
	if apiErr.Type == v1.ErrServer || apiErr.Type == v1.ErrClient || apiErr.Type == v1.ErrBadResponse {
		who, detail := answeredBy(apiErr.Detail)
		msg := fmt.Sprintf("%s answered %d %s", who, status, http.StatusText(status))
		if status == 0 {
			msg = who + " answered " + apiErr.Msg
		}
		if detail := oneLine(detail, 200); detail != "" {
			msg += ": " + detail
		}
		why = errors.New(msg)
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return false, why // refused: see Analyzer.refused
	case status == http.StatusTooManyRequests || status >= 500:
		return true, why
	case apiErr.Type == v1.ErrBadData:
		return false, fmt.Errorf("Prometheus rejected it: %s: %w", apiErr.Msg, ErrQuery)
	case apiErr.Type == v1.ErrServer || apiErr.Type == v1.ErrTimeout || apiErr.Type == v1.ErrCanceled:
		return true, why
	}
	return false, why
}

// single extracts the one value a check needs.
func single(val model.Value, q string) (float64, error) {
	var v float64
	switch val := val.(type) {
	case model.Vector:
		switch len(val) {
		case 0:
			return 0, fmt.Errorf("the query returned no series: %w", ErrNoData)
		case 1:
			v = float64(val[0].Value)
		default:
			return 0, fmt.Errorf("query %s returned %d series where one value is expected; aggregate it, e.g. sum(...): %w", q, len(val), ErrQuery)
		}
	case nil:
		return 0, fmt.Errorf("query %s returned no result: %w", q, ErrNoData)
	default:
		return 0, fmt.Errorf("query %s returned a %s where one instant-vector value is expected; aggregate it, e.g. sum(...) or vector(...): %w", q, val.Type(), ErrQuery)
	}
	switch {
	case math.IsNaN(v):
		return 0, fmt.Errorf("the query returned NaN (no requests in the window?): %w", ErrNoData)
	case math.IsInf(v, 0):
		return 0, fmt.Errorf("the query returned %v (a division by zero?): %w", v, ErrNoData)
	}
	return v, nil
}

// oneLine shortens a response body for an error message.
func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
