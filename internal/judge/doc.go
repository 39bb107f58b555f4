// Package judge decides, from counts, whether a canary is worse than the stable version it is
// replacing, with the probability of a wrong rollback bounded in advance however often it
// looks; and, for early step completion, whether the canary is close enough to stable. It is
// pure: numbers in, verdicts and words out. No I/O, no other internal package.
//
// In short: every bad event (a 5xx, a slow request) lands on the canary or on stable about as
// often as each serves traffic, if the canary is no worse. When the canary keeps getting more
// than its share, evidence builds up window after window; the canary is rolled back once the
// evidence is 1/α times what chance gives (100 at 99 % confidence). However often it looks, a
// canary that is really no worse is rolled back in at most α of runs (1 in 100). The same
// reasoning, turned around, shows when a canary is close enough to stable to end a step early.
//
// # What is compared
//
// A comparison is one kind of bad event: a 5xx answer, or a request slower than a latency
// boundary. Each analysis window gives four whole numbers (Counts): the requests the canary
// and the stable version served (nc, ns) and how many of them were bad (x, y). Rates are never
// averaged across windows; each window's evidence is computed from its own counts and the
// windows' evidence is multiplied.
//
// # The model
//
// Every canary request goes bad with probability qc, every stable request with probability
// qs, independently (binomial counts); or the counts are Poisson with means nc·qc and ns·qs.
// Nothing is assumed about qs, and the request counts, the canary's share of them and the
// window lengths may be anything, chosen by the rollout as it goes. What is tested is
// ρ = qc/qs, the canary's bad rate as a multiple of the stable's.
//
// # The one fact everything rests on
//
// For numbers a, b > 0 that depend on a window's request counts but not on its bad events,
//
//	E[a^x · b^y] ≤ exp(nc·qc·(a−1) + ns·qs·(b−1)),
//
// with equality for Poisson counts and, for binomial ones, because 1 + q(a−1) ≤ e^(q(a−1)).
// Every statistic below is such an a^x·b^y (times a constant), chosen so that the exponent on
// the right is ≤ 0 under the hypothesis being rejected. Its expected value is then at most 1:
// it is an e-value. Write s = nc/(nc+ns) for the canary's share of the window's requests,
// m = x+y for the window's bad events and h = nc·ns/(nc+ns), so that nc(1−s) = ns·s = h.
//
// # Rolling back: "the canary is worse"
//
// H0 (no rollback wanted): qc ≤ qs. For an alternative ratio θ > 1 the window's evidence is
//
//	e_θ = θ^x / (1 + s(θ−1))^m.
//
// That is a^x·b^y with a = θ/D, b = 1/D, D = 1+s(θ−1): nc(a−1) = h(θ−1)/D and ns(b−1) =
// −h(θ−1)/D, so E[e_θ] ≤ exp(h(θ−1)(qc−qs)/D) ≤ 1 under H0. e_θ is also the likelihood ratio,
// ratio θ against ratio 1, of how the window's m bad events split between the versions: given
// m, each is the canary's with probability sρ/(sρ + 1 − s). That is the statistic of Lindon &
// Malek ("Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022); the inequality
// above is a second proof of its validity that needs neither the conditioning nor a monotone
// likelihood ratio, and holds for binomial as well as Poisson counts, whatever qs is.
//
// Windows multiply: E_θ = ∏ e_θ. Each factor has conditional mean ≤ 1 given everything before
// it, whatever share the rollout set, so E_θ is a non-negative supermartingale starting at 1
// under H0; so is any fixed mixture E = Σ w_k·E_θk with Σ w_k = 1. Ville's inequality:
// P(E ever reaches 1/α) ≤ α. Rolling back when E ≥ 1/α therefore rolls back a canary that is
// no worse in at most α of runs, however many windows are looked at and whenever the run
// stops. A window with no bad events, or no requests on one side, has e_θ = 1: no evidence.
//
// Why a grid and not the Beta prior of the paper: the Beta conjugacy mixes over the
// per-event probability sρ/(sρ+1−s), a single number only while the share s is fixed; the
// steps of a rollout change s, and the mixture must be over ρ itself. A mixture over a fixed
// grid of ρ is an exact discrete prior (no numerical integration error): 32 values of θ,
// log-spaced from 1.1 to 20, equally weighted (uniform in log ρ). Any effect from +10 % to 20×
// is in range; against knowing the effect beforehand the grid costs about ln 32 ≈ 3.5 nats at
// worst, less once neighbouring values of θ both fit the data.
//
// Confidence, for words, is 1 − 1/E clipped to [0, 1]: 99 % confidence is E = 100 = 1/α at
// α = 0.01. Several comparisons (5xx and latency) each roll back on their own, so α is split
// between them (Split, Bonferroni): then all of them together roll back a canary that is no
// worse on any of them in at most α of runs.
//
// # Ending a step early: "the canary is close enough"
//
// The margin is the user's "close enough": the canary may be bad at rate up to
// max(f·qs, qs + d), a relative factor f with an absolute floor d (Margin; by default 1.5× or
// +0.2 percentage points, whichever is larger). H0' (no early pass wanted): qc > f·qs and
// qc > qs + d. Two exact families of e-values reject it, mirrors of the one above:
//
//   - ratio, for θ < f: e = (θ/f)^x · (D_f/D_θ)^m with D_t = 1+s(t−1). Its exponent is
//     h(θ−f)(qc/f − qs)/D_θ ≤ 0 when qc ≥ f·qs.
//   - difference, for κ in (0, 1/(1−s)): e = (1−κ(1−s))^x · (1+κs)^y · exp(κ·d·h). Its
//     exponent is κh(qs + d − qc) ≤ 0 when qc ≥ qs + d.
//
// A canary worse than the margin is in both nulls, so a fixed mixture of both families,
// weighted ½ and ½, is a supermartingale under H0' however large qs is, and CloseEnough (the
// mixture ≥ 1/α) is reached by such a canary in at most α of runs. No estimate of qs is
// needed. Turning the margin into one ratio ρm = max(f, 1 + d/q̂s) with an estimate q̂s would
// make the guarantee hold for a margin nobody stated whenever q̂s came out low; here whichever
// part of the margin is looser at the true qs supplies the evidence (the factor on services
// with many errors, the floor on services with few), at a cost of ln 2 ≈ 0.7 nats. The ratio
// family uses 16 values of θ log-spaced from f/4 to f/1.1: the prior sits on canaries about
// as good as stable, the ones early completion is for. The difference family is indexed by
// an alternative r, both versions bad at rate r: each window's κ is the
// one that maximises the expected log-evidence there, the root in (0, 1/(1−s)) of
// d·s(1−s)·κ² + (r − d(2s−1))·κ − d = 0; 24 values of r, log-spaced from 0.01 % to 10 %.
// Unlike the rollback test, a window without bad events is evidence here: no errors in many
// canary requests shows the canary's rate is below qs + d.
//
// A step ends early only when every comparison is close enough. A canary worse than the
// margin on one comparison then needs that comparison's test to be wrong, which happens in at
// most α of runs: so early completion is tested at the full α, not split. That bound covers
// the whole run (every step), because the evidence accumulates across steps.
//
// # What it assumes
//
// Requests go bad independently of each other. Rates may change from window to window (a
// traffic peak, a slow dependency) as long as they change for both versions alike: the
// guarantee needs the canary no worse than stable in every window, not constant rates.
// Clumped failures break independence: a retry storm or one bad pod makes errors arrive in
// groups, a group of twenty counts as twenty pieces of evidence, and the bound no longer holds
// as stated. Counts must be exact deltas of counters over the same windows for both versions
// (internal/analysis takes them from two snapshots of the counters, resets per series), not
// the extrapolated output of increase().
//
// # How well it works
//
// BenchmarkJudgeSimulation simulates rollouts on meshroll's default steps with both the
// thresholds the judge replaces and this test, and prints the table (false rollbacks,
// detection, time to rollback, early completion); TestFalseRollbackBound and
// TestEarlyPassBound hold the two α bounds on smaller simulations.
package judge
