package gates

import (
	"context"
	"errors"
	"fmt"
	"strings"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"

	"github.com/meshroll/meshroll/internal/kube"
)

// Sentinel errors of the security preflight, for the caller to turn into a failed preflight.
var (
	// ErrInsecure means MESHROLL_VERIFY_SECURITY=true found the canary less protected than
	// required: its mTLS mode is not STRICT, or a policy protecting stable misses it.
	ErrInsecure = errors.New("the canary is not protected as required")
	// ErrSecurityForbidden means the credentials may not read the security policies that
	// MESHROLL_VERIFY_SECURITY=true checks.
	ErrSecurityForbidden = errors.New("missing permissions for the security verification")
)

// Security is the security preflight of one rollout: parity (every policy protecting the
// stable pods protects the canary's) always, and with Strict (MESHROLL_VERIFY_SECURITY=true)
// the canary's effective mTLS mode STRICT too, both gaps then failing the preflight.
type Security struct {
	Kube      kubernetes.Interface
	Istio     istioclient.Interface
	Namespace string
	Root      string // Istio's root namespace
	// Stable and Canary are the Deployments: their pod templates' labels are what policy
	// selectors match. Without both, parity is not checked (Strict needs both).
	Stable, Canary string
	Strict         bool
}

// Check returns what the run should warn about and, with Strict, an error matching
// ErrInsecure or ErrSecurityForbidden for a gap. Without Strict a gap, or a policy it may not
// read, is a warning: the check is always on and must not stop a run it was not asked to.
func (s Security) Check(ctx context.Context) ([]string, error) {
	if s.Stable == "" || s.Canary == "" {
		return nil, nil
	}
	if s.Strict {
		if err := s.permitted(ctx); err != nil {
			return nil, err
		}
	}
	var w Workloads
	var misses []Miss
	err := kube.Retry(ctx, func(ctx context.Context) error {
		var err error
		if w, err = ReadWorkloads(ctx, s.Kube, s.Namespace, s.Stable, s.Canary); err != nil {
			return err
		}
		misses, err = Parity(ctx, s.Istio, s.Root, w)
		return err
	})
	if err != nil {
		if s.Strict {
			return nil, fmt.Errorf("failed to verify the canary's security: %w", err)
		}
		return []string{fmt.Sprintf("security parity of the canary with stable was not checked: %v", err)}, nil
	}
	var gaps []string
	for _, m := range misses {
		gaps = append(gaps, m.String())
	}
	if !s.Strict {
		for i, g := range gaps {
			gaps[i] = "security parity: " + g + "; give the policy a selector that matches both versions (set MESHROLL_VERIFY_SECURITY=true to stop such a rollout)"
		}
		return gaps, nil
	}
	var mode, source string
	err = kube.Retry(ctx, func(ctx context.Context) error {
		var err error
		mode, source, err = MTLSMode(ctx, s.Istio, s.Root, w)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to verify the canary's mTLS mode: %w", err)
	}
	if mode != MTLSStrict {
		gaps = append(gaps, fmt.Sprintf("the canary's mTLS mode is %s (%s), not STRICT: it accepts plaintext; apply a PeerAuthentication with mtls.mode STRICT to it (namespace %s, or mesh-wide in %s)", mode, source, s.Namespace, s.Root))
	}
	if len(gaps) > 0 {
		return nil, fmt.Errorf("%w (MESHROLL_VERIFY_SECURITY=true):\n  - %s", ErrInsecure, strings.Join(gaps, "\n  - "))
	}
	return nil, nil
}

// permitted checks, with SelfSubjectAccessReviews, that the credentials may list the policies
// the verification reads, in the workloads' namespace and the root namespace.
func (s Security) permitted(ctx context.Context) error {
	var needs []kube.Permission
	for _, ns := range policyNamespaces(s.Root, s.Namespace) {
		for _, res := range []string{"peerauthentications", "authorizationpolicies", "requestauthentications"} {
			needs = append(needs, kube.Permission{Verb: "list", Group: "security.istio.io", Resource: res, Namespace: ns})
		}
	}
	missing, err := kube.Missing(ctx, s.Kube, needs)
	if err != nil || len(missing) == 0 {
		return err
	}
	words := make([]string, len(missing))
	for i, m := range missing {
		words[i] = m.String()
	}
	// "forbidden: " as every other missing permission says it (the Istio preflight, the lock,
	// the scale-down), so that a reader, or a log search, finds them all alike.
	return fmt.Errorf("%w: forbidden: the credentials in use cannot %s, which MESHROLL_VERIFY_SECURITY=true needs; grant them (see examples/rbac.yaml), or unset MESHROLL_VERIFY_SECURITY",
		ErrSecurityForbidden, strings.Join(words, ", nor "))
}
