package gates

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The mutual TLS modes MTLSMode returns, spelled as Istio spells them.
const (
	MTLSStrict     = "STRICT"
	MTLSPermissive = "PERMISSIVE"
	MTLSDisable    = "DISABLE"
)

// The kinds of security policy Parity reads.
const (
	KindPeerAuthentication    = "PeerAuthentication"
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"
)

// Workloads are the two versions a rollout moves traffic between: the labels of their
// Deployments' pod templates, which are the labels Istio matches policy selectors against.
type Workloads struct {
	Namespace    string
	StableLabels map[string]string
	CanaryLabels map[string]string
}

// ReadWorkloads reads the pod template labels of the stable and canary Deployments.
func ReadWorkloads(ctx context.Context, kube kubernetes.Interface, namespace, stable, canary string) (Workloads, error) {
	if stable == "" || canary == "" {
		return Workloads{}, errors.New("security verification needs both the stable and the canary Deployment named")
	}
	w := Workloads{Namespace: namespace}
	for _, d := range []struct {
		name   string
		labels *map[string]string
	}{{stable, &w.StableLabels}, {canary, &w.CanaryLabels}} {
		dep, err := kube.AppsV1().Deployments(namespace).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return Workloads{}, fmt.Errorf("failed to get Deployment %s/%s: %w", namespace, d.name, requestErr(ctx, err))
		}
		*d.labels = dep.Spec.Template.Labels
	}
	return w, nil
}

// MTLSMode returns the canary's effective mutual TLS mode (MTLSStrict, MTLSPermissive or
// MTLSDisable) and the policy that decided it, resolving the PeerAuthentications in its
// namespace and in Istio's root namespace as istiod does:
//   - the narrowest scope that sets a mode wins: a workload-specific policy (a selector that
//     matches the canary's labels, in the canary's namespace) over a namespace-wide one (no or
//     an empty selector) over a mesh-wide one (no selector, in the root namespace) over
//     Istio's default, PERMISSIVE; UNSET, or no mtls at all, inherits from the scope above;
//   - within one scope the oldest policy wins (ties by name); policies with a selector in the
//     root namespace are ignored;
//   - the workload-specific policy's portLevelMtls overrides its mode per workload (container)
//     port, UNSET inheriting the workload's mode.
//
// With ports, the result is the weakest mode among those ports. Without, it is the weakest of
// the workload's mode and every port-level override: the canary is STRICT only if every port
// it may serve is.
func MTLSMode(ctx context.Context, istio istioclient.Interface, root string, w Workloads, ports ...uint32) (mode, source string, err error) {
	if err := w.check(root, false); err != nil {
		return "", "", err
	}
	peers, err := listPeers(ctx, istio, policyNamespaces(root, w.Namespace))
	if err != nil {
		return "", "", err
	}
	d := effectiveMTLS(root, w, peers, ports)
	return d.mode, d.source, nil
}

// mtlsDecision is a mode and the policy that set it.
type mtlsDecision struct{ mode, source string }

// effectiveMTLS is MTLSMode on policies already read. It follows ComposePeerAuthentication in
// istio/istio pilot/pkg/security/authn/policy_applier.go.
func effectiveMTLS(root string, w Workloads, peers []*securityv1.PeerAuthentication, ports []uint32) mtlsDecision {
	mesh, namespace, workload := peerScopes(root, w.Namespace, w.CanaryLabels, peers)
	d := mtlsDecision{MTLSPermissive, "Istio's default: no PeerAuthentication sets a mode for it"}
	for _, level := range []struct {
		pa    *securityv1.PeerAuthentication
		scope string
	}{{mesh, "mesh-wide"}, {namespace, "namespace-wide"}, {workload, "workload-specific"}} {
		if level.pa == nil {
			continue
		}
		if m := modeOf(level.pa.Spec.GetMtls()); m != "" {
			d = mtlsDecision{m, fmt.Sprintf("PeerAuthentication %s/%s (%s)", level.pa.Namespace, level.pa.Name, level.scope)}
		}
	}
	perPort := map[uint32]mtlsDecision{}
	if workload != nil {
		for port, mtls := range workload.Spec.GetPortLevelMtls() {
			perPort[port] = d
			if m := modeOf(mtls); m != "" {
				perPort[port] = mtlsDecision{m, fmt.Sprintf("PeerAuthentication %s/%s (workload-specific, port %d)", workload.Namespace, workload.Name, port)}
			}
		}
	}
	var candidates []mtlsDecision
	if len(ports) == 0 {
		candidates = append(candidates, d)
		for _, port := range slices.Sorted(maps.Keys(perPort)) {
			candidates = append(candidates, perPort[port])
		}
	}
	for _, port := range ports {
		pd, ok := perPort[port]
		if !ok {
			pd = d
		}
		candidates = append(candidates, pd)
	}
	weakest := candidates[0]
	for _, c := range candidates[1:] {
		if mtlsStrength[c.mode] < mtlsStrength[weakest.mode] {
			weakest = c
		}
	}
	return weakest
}

// peerScopes picks, per scope, the PeerAuthentication istiod applies to a pod with these labels
// in namespace, if any.
func peerScopes(root, namespace string, labels map[string]string, peers []*securityv1.PeerAuthentication) (mesh, ns, workload *securityv1.PeerAuthentication) {
	for _, pa := range peers {
		selector := pa.Spec.GetSelector().GetMatchLabels()
		switch {
		case len(selector) == 0 && pa.Namespace == root:
			mesh = olderPeer(mesh, pa)
		case len(selector) == 0 && pa.Namespace == namespace:
			ns = olderPeer(ns, pa)
		case pa.Namespace == namespace && pa.Namespace != root && selectorMatches(selector, labels):
			workload = olderPeer(workload, pa)
		}
	}
	return mesh, ns, workload
}

var mtlsStrength = map[string]int{MTLSDisable: 0, MTLSPermissive: 1, MTLSStrict: 2}

// modeOf is the mode a PeerAuthentication's mtls sets, or "" when it inherits (UNSET or absent).
func modeOf(mtls *securityapi.PeerAuthentication_MutualTLS) string {
	if mode := mtls.GetMode(); mode != securityapi.PeerAuthentication_MutualTLS_UNSET {
		return mode.String()
	}
	return ""
}

// olderPeer is whichever of two policies istiod prefers within one scope: the older, then the one
// whose name sorts first (creation times have a resolution of one second).
func olderPeer(a, b *securityv1.PeerAuthentication) *securityv1.PeerAuthentication {
	switch {
	case a == nil:
		return b
	case b.CreationTimestamp.Before(&a.CreationTimestamp):
		return b
	case a.CreationTimestamp.Equal(&b.CreationTimestamp) && b.Name < a.Name:
		return b
	}
	return a
}

// Miss is a security policy that applies to the stable pods but not to the canary's.
type Miss struct {
	Kind, Namespace, Name string
	Selector              string // the policy's selector, "version=v1"
	Canary                string // the canary's labels on the selector's keys, "version=v2"
}

func (m Miss) String() string {
	return fmt.Sprintf("%s %s/%s selects %s: the canary (%s) is not protected by it", m.Kind, m.Namespace, m.Name, m.Selector, m.Canary)
}

// Parity returns every PeerAuthentication, AuthorizationPolicy and RequestAuthentication that
// applies to the stable pods but not to the canary's, by kind, then the workloads' namespace
// before the root namespace, then name. It reads both namespaces: in the root namespace a
// selector-less policy applies to the whole mesh, and an AuthorizationPolicy's or
// RequestAuthentication's selector matches pods in every namespace (a PeerAuthentication's
// selector there is ignored by Istio).
//
// Policies with targetRef or targetRefs are skipped: they attach to gateways and waypoints,
// never to a sidecar by its labels, so they do not tell stable and canary pods apart.
//
// A stable-only policy is no miss when a copy stands in for it: a policy of the same kind with
// the same spec apart from its selector that applies to the canary. AuthorizationPolicies and
// RequestAuthentications add up, so any such copy does. PeerAuthentications do not (one per
// scope decides), so only the workload-specific one istiod picks for the canary does.
func Parity(ctx context.Context, istio istioclient.Interface, root string, w Workloads) ([]Miss, error) {
	if err := w.check(root, true); err != nil {
		return nil, err
	}
	namespaces := policyNamespaces(root, w.Namespace)
	peers, err := listPeers(ctx, istio, namespaces)
	if err != nil {
		return nil, err
	}
	all, err := listAccessPolicies(ctx, istio, namespaces)
	if err != nil {
		return nil, err
	}
	all = append(peerRules(peers), all...)
	_, _, canaryPeer := peerScopes(root, w.Namespace, w.CanaryLabels, peers)
	var misses []Miss
	for _, p := range all {
		if !p.appliesTo(root, w.Namespace, w.StableLabels) || p.appliesTo(root, w.Namespace, w.CanaryLabels) {
			continue
		}
		copied := slices.ContainsFunc(all, func(q securityRule) bool {
			if q.kind != p.kind || !q.appliesTo(root, w.Namespace, w.CanaryLabels) || !proto.Equal(q.rest, p.rest) {
				return false
			}
			return q.kind != KindPeerAuthentication || canaryPeer != nil && q.namespace == canaryPeer.Namespace && q.name == canaryPeer.Name
		})
		if !copied {
			misses = append(misses, Miss{Kind: p.kind, Namespace: p.namespace, Name: p.name, Selector: selectorString(p.selector), Canary: canaryOn(p.selector, w.CanaryLabels)})
		}
	}
	return misses, nil
}

// securityRule is a security policy as Parity compares them.
type securityRule struct {
	kind, namespace, name string
	selector              map[string]string
	targeted              bool          // has targetRef(s)
	rest                  proto.Message // the spec without its selector
}

// appliesTo says whether Istio applies the policy to a sidecar with these labels in namespace.
func (p securityRule) appliesTo(root, namespace string, labels map[string]string) bool {
	switch {
	case p.targeted, p.namespace != namespace && p.namespace != root:
		return false
	case p.kind == KindPeerAuthentication && p.namespace == root && len(p.selector) > 0:
		return false
	}
	return selectorMatches(p.selector, labels)
}

func peerRules(peers []*securityv1.PeerAuthentication) []securityRule {
	rules := make([]securityRule, 0, len(peers))
	for _, pa := range peers {
		rest := proto.CloneOf(&pa.Spec)
		rest.Selector = nil
		rules = append(rules, securityRule{KindPeerAuthentication, pa.Namespace, pa.Name, pa.Spec.GetSelector().GetMatchLabels(), false, rest})
	}
	return rules
}

// listAccessPolicies reads the AuthorizationPolicies, then the RequestAuthentications, in
// namespaces.
func listAccessPolicies(ctx context.Context, istio istioclient.Interface, namespaces []string) ([]securityRule, error) {
	var all []securityRule
	for _, ns := range namespaces {
		list, err := istio.SecurityV1().AuthorizationPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("failed to list AuthorizationPolicies in namespace %s: %w", ns, requestErr(ctx, err))
		}
		for _, ap := range list.Items {
			rest := proto.CloneOf(&ap.Spec)
			rest.Selector = nil
			targeted := ap.Spec.GetTargetRef() != nil || len(ap.Spec.GetTargetRefs()) > 0
			all = append(all, securityRule{KindAuthorizationPolicy, ap.Namespace, ap.Name, ap.Spec.GetSelector().GetMatchLabels(), targeted, rest})
		}
	}
	for _, ns := range namespaces {
		list, err := istio.SecurityV1().RequestAuthentications(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("failed to list RequestAuthentications in namespace %s: %w", ns, requestErr(ctx, err))
		}
		for _, ra := range list.Items {
			rest := proto.CloneOf(&ra.Spec)
			rest.Selector = nil
			targeted := ra.Spec.GetTargetRef() != nil || len(ra.Spec.GetTargetRefs()) > 0
			all = append(all, securityRule{KindRequestAuthentication, ra.Namespace, ra.Name, ra.Spec.GetSelector().GetMatchLabels(), targeted, rest})
		}
	}
	return all, nil
}

func listPeers(ctx context.Context, istio istioclient.Interface, namespaces []string) ([]*securityv1.PeerAuthentication, error) {
	var peers []*securityv1.PeerAuthentication
	for _, ns := range namespaces {
		list, err := istio.SecurityV1().PeerAuthentications(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("failed to list PeerAuthentications in namespace %s: %w", ns, requestErr(ctx, err))
		}
		peers = append(peers, list.Items...)
	}
	return peers, nil
}

// policyNamespaces are the namespaces whose policies can apply to a workload in namespace.
func policyNamespaces(root, namespace string) []string {
	if namespace == root {
		return []string{namespace}
	}
	return []string{namespace, root}
}

// check catches a caller's mistake that would otherwise read every namespace (an empty
// namespace lists all) or let no selector match.
func (w Workloads) check(root string, needStable bool) error {
	switch {
	case root == "" || w.Namespace == "":
		return errors.New("security verification needs the workloads' namespace and Istio's root namespace")
	case len(w.CanaryLabels) == 0 || needStable && len(w.StableLabels) == 0:
		return errors.New("security verification needs the pod template labels of the canary and stable Deployments")
	}
	return nil
}

// requestErr replaces a request's error by the reason its context ended, if it did, so that the
// caller says what stopped the run rather than "context canceled".
func requestErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// selectorMatches is Istio's label match: every label of the selector, with its value; an empty
// selector selects everything.
func selectorMatches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// canaryOn describes the canary's labels on the keys where the selector does not match them.
func canaryOn(selector, canary map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(selector)) {
		switch v, ok := canary[k]; {
		case !ok:
			parts = append(parts, "no label "+k)
		case v != selector[k]:
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

func selectorString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
