package traffic

import (
	"fmt"
	"strings"
)

// Relative weights (Gateway API): a backend's weight is its share of the sum of the rule's
// weights, any non-negative integer (1 when unset). Destination.Raw holds the weight as the
// object has it and Destination.Weight the share in percent, for everything that reasons in
// percent (a progression's steps, the summary).

// Shares fills in the Weight of every destination, the share its Raw weight has of their sum,
// in percent, rounded to the nearest integer (what meshroll writes is exact). A sum of 0
// sends no traffic anywhere: every share is 0.
func Shares(ds []Destination) []Destination {
	total := rawTotal(ds)
	out := make([]Destination, len(ds))
	for i, d := range ds {
		if total > 0 {
			d.Weight = int((int64(d.Raw)*200 + int64(total)) / (2 * int64(total)))
		} else {
			d.Weight = 0
		}
		out[i] = d
	}
	return out
}

func rawOf(ds []Destination, r Role) int {
	for _, d := range ds {
		if d.Role == r {
			return d.Raw
		}
	}
	return 0
}

func rawTotal(ds []Destination) int {
	total := 0
	for _, d := range ds {
		total += d.Raw
	}
	return total
}

// SplitShares gives the canary canaryPercent of the traffic by relative weights, the way
// SplitWeights does by percentages: every other destination keeps its share and the stable
// destination takes the rest. The weights written are integers and the proportions exact:
//   - a rule whose weights sum to 100 is written in percentages, as SplitWeights writes them;
//   - a rule of only stable and canary is written in percentages too (its proportions are
//     the ones being set);
//   - otherwise every other destination keeps its weight, multiplied, with the rule's whole
//     sum, by the smallest factor that makes the canary's share a whole weight.
//
// A rule whose weights sum to 0 is refused: it sends nothing anywhere, and no share of
// nothing is a canary's. where names the rule in messages.
func SplitShares(ds []Destination, canaryPercent int, where string) ([]Destination, error) {
	if canaryPercent < 0 || canaryPercent > 100 {
		return nil, Preflightf(ErrWeightTooLarge, "canary weight %d is outside 0–100", canaryPercent)
	}
	total, others := rawTotal(ds), 0
	var otherNames []string
	for _, d := range ds {
		if d.Role == RoleOther {
			others += d.Raw
			otherNames = append(otherNames, fmt.Sprintf("%s weight %d", d.Label(), d.Raw))
		}
	}
	if total > 0 && rawOf(ds, RoleCanary)*100 == canaryPercent*total {
		return Shares(ds), nil // in place already: nothing is rewritten, in whatever unit
	}
	if total == 0 {
		return nil, Preflightf(ErrInvalidWeights, "the weights of %s sum to 0: it sends no traffic, so there is no share to give the canary; give its backends weights first", where)
	}
	if others == 0 || total == 100 {
		// Percentages: the rule's already, or stable and canary alone, whose proportions are
		// the ones being set.
		pct := make([]Destination, len(ds))
		for i, d := range ds {
			if d.Role == RoleOther {
				d.Weight = d.Raw
			}
			pct[i] = d
		}
		out, err := SplitWeights(pct, canaryPercent, where)
		if err != nil {
			return nil, err
		}
		return withRaw(out), nil
	}
	// The canary's share must be canaryPercent/100 of m·total for a whole m.
	if canaryPercent*total > 100*(total-others) {
		return nil, Preflightf(ErrWeightTooLarge,
			"canary share %d%% is more than the %s left on %s after its other backends (%s): lower the canary weight or move those backends' weight away",
			canaryPercent, percentOf(total-others, total), where, strings.Join(otherNames, ", "))
	}
	m := 100 / gcd(canaryPercent*total, 100)
	canary := canaryPercent * m * total / 100
	out := make([]Destination, len(ds))
	for i, d := range ds {
		switch d.Role {
		case RoleOther:
			d.Raw *= m
		case RoleCanary:
			d.Raw = canary
		case RoleStable:
			d.Raw = m*(total-others) - canary
		}
		out[i] = d
	}
	return Shares(out), nil
}

// withRaw sets Raw to the percentages SplitWeights wrote.
func withRaw(ds []Destination) []Destination {
	for i := range ds {
		ds[i].Raw = ds[i].Weight
	}
	return ds
}

func percentOf(part, total int) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", 100*float64(part)/float64(total)), "0"), ".") + "%"
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	if a == 0 {
		return 1
	}
	return a
}
