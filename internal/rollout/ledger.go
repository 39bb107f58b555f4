package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshroll/meshroll/internal/config"
)

// ledger keeps a run's Record with its lock while the run holds it: each change is written
// at once, and keep renews the lock every third of its duration. A nil ledger (no Lock)
// records nothing.
type ledger struct {
	lock   Lock
	now    func() time.Time
	every  time.Duration // between renewals
	budget time.Duration // of one write of the record: a silent API server is retried until then

	mu   sync.Mutex
	rec  Record
	lost error // set once another run is found holding the lock
}

// lockBudget bounds the release of the lock and the Event of a run that stopped; the
// record's writes during the run have the step's write budget.
const lockBudget = 10 * time.Second

// set changes the record and writes it. After ErrLockLost it writes nothing again.
func (l *ledger) set(ctx context.Context, change func(*Record)) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	change(&l.rec)
	l.rec.Updated = l.now()
	budget := cmp.Or(l.budget, lockBudget)
	ctx, cancel := context.WithTimeoutCause(ctx, budget, fmt.Errorf("the lock could not be renewed within %s", budget))
	defer cancel()
	err := l.lock.Update(ctx, l.rec)
	if errors.Is(err, ErrLockLost) {
		l.lost = err
	}
	return err
}

// keep renews the lock until ctx ends. When another run has taken it, it calls lost once and
// stops; a renewal the API server does not answer is tried again at the next tick.
func (l *ledger) keep(ctx context.Context, lost func(error)) {
	ticker := time.NewTicker(l.every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := l.set(ctx, func(*Record) {}); errors.Is(err, ErrLockLost) {
			lost(err)
			return
		}
	}
}

// finish records how the run ended and frees the lock, unless another run holds it now.
func (l *ledger) finish(ctx context.Context, res *Result) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return nil
	}
	l.rec.Outcome, l.rec.Reason = res.Outcome, res.Reason
	l.rec.Doing = "finished: " + string(res.Outcome)
	l.rec.Updated = l.now()
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), lockBudget, fmt.Errorf("the lock could not be released within %s", lockBudget))
	defer cancel()
	return l.lock.Release(ctx, l.rec)
}

// inputsOf are the variables that define a rollout, as resume compares them: what moves
// between which versions, through which stages.
func inputsOf(cfg config.Config) map[string]string {
	match := ""
	if len(cfg.Match) > 0 {
		match = fmt.Sprint(cfg.Match) // maps print with sorted keys
	}
	steps := ""
	if cfg.Mode.Progressive() {
		steps = joinInts(cfg.Steps)
	}
	in := map[string]string{
		// The Lease is named after the routing object, whatever its kind: the kind tells a
		// VirtualService's rollout from an HTTPRoute's of the same name.
		"MESHROLL_HTTP_ROUTE":        cfg.HTTPRoute,
		"MESHROLL_ROUTE":             cfg.Route,
		"MESHROLL_STABLE_SUBSET":     cfg.StableSubset,
		"MESHROLL_CANARY_SUBSET":     cfg.CanarySubset,
		"MESHROLL_STABLE_SERVICE":    cfg.StableService,
		"MESHROLL_CANARY_SERVICE":    cfg.CanaryService,
		"MESHROLL_STABLE_DEPLOYMENT": cfg.StableDeployment,
		"MESHROLL_CANARY_DEPLOYMENT": cfg.CanaryDeployment,
		"MESHROLL_MATCH":             match,
		"MESHROLL_MIRROR_PERCENT":    "",
		"MESHROLL_STEPS":             steps,
	}
	if cfg.MirrorPercent > 0 {
		in["MESHROLL_MIRROR_PERCENT"] = strconv.FormatFloat(cfg.MirrorPercent, 'g', -1, 64)
	}
	maps.DeleteFunc(in, func(_, v string) bool { return v == "" })
	return in
}

// differences lists, one per line, the variables whose values differ between the rollout
// recorded (was) and this run (now).
func differences(was, now map[string]string) string {
	names := slices.Collect(maps.Keys(was))
	for k := range now {
		if _, ok := was[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var lines []string
	for _, k := range names {
		if was[k] != now[k] {
			lines = append(lines, fmt.Sprintf("%s: the rollout had %s, this run has %s", k, shown(was[k]), shown(now[k])))
		}
	}
	return strings.Join(lines, "\n")
}

func shown(v string) string {
	if v == "" {
		return "none"
	}
	return strconv.Quote(v)
}
