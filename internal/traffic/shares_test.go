package traffic

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func rel(label string, role Role, raw int) Destination {
	return Destination{Host: label, Role: role, Raw: raw}
}

func TestSplitShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ds      []Destination
		canary  int
		want    []int // raw weights written, in order
		shares  []int // their shares in percent
		wantErr error
	}{
		{name: "a rule in percentages stays in percentages", canary: 25,
			ds:   []Destination{rel("v1", RoleStable, 90), rel("v2", RoleCanary, 10)},
			want: []int{75, 25}, shares: []int{75, 25}},
		{name: "stable and canary alone are written in percentages", canary: 25,
			ds:   []Destination{rel("v1", RoleStable, 1), rel("v2", RoleCanary, 1)},
			want: []int{75, 25}, shares: []int{75, 25}},
		{name: "a lone stable backend gets the canary beside it", canary: 10,
			ds:   []Destination{rel("v1", RoleStable, 1), rel("v2", RoleCanary, 0)},
			want: []int{90, 10}, shares: []int{90, 10}},
		{name: "another backend keeps its share: 3/1 with a third", canary: 25,
			ds:   []Destination{rel("v1", RoleStable, 2), rel("other", RoleOther, 1), rel("v2", RoleCanary, 0)},
			want: []int{5, 4, 3}, shares: []int{42, 33, 25}},
		{name: "the whole rule doubled for a half", canary: 50,
			ds:   []Destination{rel("v1", RoleStable, 3), rel("other", RoleOther, 2), rel("v2", RoleCanary, 0)},
			want: []int{1, 4, 5}, shares: []int{10, 40, 50}},
		{name: "no scaling when the canary's share is whole already", canary: 50,
			ds:   []Destination{rel("v1", RoleStable, 3), rel("other", RoleOther, 1), rel("v2", RoleCanary, 0)},
			want: []int{1, 1, 2}, shares: []int{25, 25, 50}},
		{name: "others in percentages keep them", canary: 30,
			ds:   []Destination{rel("v1", RoleStable, 80), rel("other", RoleOther, 20), rel("v2", RoleCanary, 0)},
			want: []int{50, 20, 30}, shares: []int{50, 20, 30}},
		{name: "relative others: 1/1/2 to a canary of 20", canary: 20,
			ds:   []Destination{rel("v1", RoleStable, 2), rel("a", RoleOther, 1), rel("b", RoleOther, 1), rel("v2", RoleCanary, 0)},
			want: []int{6, 5, 5, 4}, shares: []int{30, 25, 25, 20}},
		{name: "back to stable", canary: 0,
			ds:   []Destination{rel("v1", RoleStable, 1), rel("other", RoleOther, 1), rel("v2", RoleCanary, 1)},
			want: []int{2, 1, 0}, shares: []int{67, 33, 0}},
		{name: "a sum of 0 is refused", canary: 10,
			ds:      []Destination{rel("v1", RoleStable, 0), rel("v2", RoleCanary, 0)},
			wantErr: ErrInvalidWeights},
		{name: "more than the others leave is refused", canary: 100,
			ds:      []Destination{rel("v1", RoleStable, 1), rel("other", RoleOther, 1)},
			wantErr: ErrWeightTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SplitShares(tt.ds, tt.canary, "rule default of HTTPRoute prod/reviews")
			if tt.wantErr != nil || err != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrPreflight) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			var raw, shares []int
			for _, d := range got {
				raw, shares = append(raw, d.Raw), append(shares, d.Weight)
			}
			if diff := cmp.Diff(tt.want, raw); diff != "" {
				t.Errorf("weights (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.shares, shares); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
			// The canary's share is exact, whatever the rounding of the others'.
			total, canary := 0, 0
			for _, d := range got {
				total += d.Raw
				if d.Role == RoleCanary {
					canary = d.Raw
				}
			}
			if canary*100 != tt.canary*total {
				t.Errorf("canary weight %d of %d is not exactly %d%%", canary, total, tt.canary)
			}
		})
	}
}

func TestDescribeRelativeWeights(t *testing.T) {
	t.Parallel()
	ds := Shares([]Destination{rel("reviews-v1", RoleStable, 3), rel("reviews-v2", RoleCanary, 1)})
	if got, want := DescribeWeights(ds), "reviews-v1 3 (75%), reviews-v2 1 (25%)"; got != want {
		t.Errorf("DescribeWeights = %q, want %q", got, want)
	}
	pct := Shares([]Destination{rel("reviews-v1", RoleStable, 75), rel("reviews-v2", RoleCanary, 25)})
	if got, want := DescribeWeights(pct), "reviews-v1 75, reviews-v2 25"; got != want {
		t.Errorf("DescribeWeights = %q, want %q", got, want)
	}
}

func TestDescribeChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		before, after []Destination
		want          string
	}{
		{name: "percentages",
			before: []Destination{{Host: "v1", Role: RoleStable, Weight: 90}, {Host: "v2", Role: RoleCanary, Weight: 10}},
			after:  []Destination{{Host: "v1", Role: RoleStable, Weight: 75}, {Host: "v2", Role: RoleCanary, Weight: 25}},
			want:   "v1 90 → 75, v2 10 → 25"},
		{name: "relative weights become percentages",
			before: Shares([]Destination{rel("reviews-v1", RoleStable, 1)}),
			after:  Shares([]Destination{rel("reviews-v1", RoleStable, 80), rel("reviews-v2", RoleCanary, 20)}),
			want:   "reviews-v1 1 → 80 (80%), reviews-v2 – → 20 (20%)"},
		{name: "pruned",
			before: []Destination{{Host: "v3", Role: RoleOther}, {Host: "v1", Role: RoleStable, Weight: 50}, {Host: "v2", Role: RoleCanary, Weight: 50}},
			after:  []Destination{{Host: "v2", Role: RoleCanary, Weight: 100}},
			want:   "v2 50 → 100, v3 0 → removed, v1 50 → removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := DescribeChange(tt.before, tt.after); got != tt.want {
				t.Errorf("DescribeChange = %q, want %q", got, tt.want)
			}
		})
	}
}
