package judge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		margin  bool
		windows []Counts
		want    string
	}{
		{
			name: "nothing yet",
			want: "5xx: no canary requests yet",
		},
		{
			name:    "no stable traffic",
			windows: []Counts{{CanaryRequests: 1, CanaryBad: 1}},
			want:    "5xx 100 % over 1 canary request: no stable requests to compare with yet",
		},
		{
			name:    "undecided",
			windows: []Counts{{CanaryRequests: 1840, StableRequests: 16560, CanaryBad: 17, StableBad: 66}},
			want:    "5xx 0.92 % vs 0.4 % over 1,840 canary requests: no evidence yet that the canary is worse (confidence 92 %)",
		},
		{
			name: "worse",
			windows: []Counts{
				{CanaryRequests: 1840, StableRequests: 16560, CanaryBad: 17, StableBad: 66},
				{CanaryRequests: 1840, StableRequests: 16560, CanaryBad: 17, StableBad: 66},
			},
			want: "5xx 0.92 % vs 0.4 % over 3,680 canary requests: worse with 99.7 % confidence",
		},
		{
			name:    "better, with a margin not yet shown",
			margin:  true,
			windows: []Counts{{CanaryRequests: 30000, StableRequests: 30000, CanaryBad: 150, StableBad: 150}},
			want: "5xx 0.5 % vs 0.5 % over 30,000 canary requests: no evidence yet that the canary is worse (confidence 0 %); " +
				"within the margin (1.5× or +0.2 points) with 98.5 % confidence so far",
		},
		{
			name:    "within the margin",
			margin:  true,
			windows: []Counts{{CanaryRequests: 1_000_000, StableRequests: 1_000_000, CanaryBad: 3000, StableBad: 3000}},
			want:    "5xx 0.3 % vs 0.3 % over 1,000,000 canary requests: within the margin (1.5× or +0.2 points) with 99.99 % confidence",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			test := NewTest(0.005)
			if tt.margin {
				test.WithMargin(DefaultMargin(), 0.01)
			}
			for _, w := range tt.windows {
				test.Observe(w)
			}
			if diff := cmp.Diff(tt.want, test.Describe("5xx")); diff != "" {
				t.Errorf("Describe (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNumberWords(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ got, want string }{
		{percent(0.009), "0.9 %"},
		{percent(0.0045), "0.45 %"},
		{percent(0.123), "12 %"},
		{percent(0.0184), "1.8 %"},
		{percent(0.00012), "0.012 %"},
		{percent(0.0000001), "0 %"},
		{percent(0), "0 %"},
		{percent(1), "100 %"},
		{confidenceWords(0), "0 %"},
		{confidenceWords(0.629), "62 %"},
		{confidenceWords(0.8999), "89 %"},
		{confidenceWords(0.9929), "99.2 %"},
		{confidenceWords(0.995), "99.5 %"},
		{confidenceWords(0.99), "99 %"},
		{confidenceWords(0.999999), "99.99 %"},
		{confidenceWords(1), "99.99 %"},
		{thousands(0), "0"},
		{thousands(999), "999"},
		{thousands(1840), "1,840"},
		{thousands(1234567), "1,234,567"},
		{thousands(-12345), "-12,345"},
		{Margin{Factor: 1.5, Floor: 0.002}.words(), "1.5× or +0.2 points"},
		{Margin{Factor: 2}.words(), "2×"},
		{Margin{Factor: 1, Floor: 0.0005}.words(), "+0.05 points"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
