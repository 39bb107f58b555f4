package gates

// Policies in the tests' two namespaces, and what they mean for the canary (app=reviews,
// version=v2) beside the stable pods (app=reviews, version=v1). In sources, {root} and {ns}
// stand for the root namespace and the workloads' namespace.

const mtlsDefaultSource = "Istio's default: no PeerAuthentication sets a mode for it"

var mtlsCases = []struct {
	name            string
	root, namespace string // manifests applied in each
	ports           []uint32
	mode, source    string
}{
	{name: "no policy at all is PERMISSIVE", mode: MTLSPermissive, source: mtlsDefaultSource},

	{name: "mesh STRICT", root: peerYAML("default", "{mtls: {mode: STRICT}}"),
		mode: MTLSStrict, source: "PeerAuthentication {root}/default (mesh-wide)"},
	{name: "mesh PERMISSIVE", root: peerYAML("default", "{mtls: {mode: PERMISSIVE}}"),
		mode: MTLSPermissive, source: "PeerAuthentication {root}/default (mesh-wide)"},
	{name: "mesh DISABLE", root: peerYAML("default", "{mtls: {mode: DISABLE}}"),
		mode: MTLSDisable, source: "PeerAuthentication {root}/default (mesh-wide)"},
	{name: "mesh UNSET is Istio's default", root: peerYAML("default", "{mtls: {mode: UNSET}}"),
		mode: MTLSPermissive, source: mtlsDefaultSource},
	{name: "a selector in the root namespace is ignored",
		root: peerYAML("default", "{mtls: {mode: STRICT}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}"),
		mode: MTLSStrict, source: "PeerAuthentication {root}/default (mesh-wide)"},

	{name: "namespace STRICT over mesh PERMISSIVE",
		root: peerYAML("default", "{mtls: {mode: PERMISSIVE}}"), namespace: peerYAML("default", "{mtls: {mode: STRICT}}"),
		mode: MTLSStrict, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "namespace PERMISSIVE over mesh STRICT",
		root: peerYAML("default", "{mtls: {mode: STRICT}}"), namespace: peerYAML("default", "{mtls: {mode: PERMISSIVE}}"),
		mode: MTLSPermissive, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "namespace DISABLE over mesh STRICT",
		root: peerYAML("default", "{mtls: {mode: STRICT}}"), namespace: peerYAML("default", "{mtls: {mode: DISABLE}}"),
		mode: MTLSDisable, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "namespace UNSET inherits mesh STRICT",
		root: peerYAML("default", "{mtls: {mode: STRICT}}"), namespace: peerYAML("default", "{mtls: {mode: UNSET}}"),
		mode: MTLSStrict, source: "PeerAuthentication {root}/default (mesh-wide)"},
	{name: "an empty selector is namespace-wide",
		namespace: peerYAML("all", "{selector: {}, mtls: {mode: STRICT}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/all (namespace-wide)"},

	{name: "workload STRICT over namespace PERMISSIVE",
		namespace: peerYAML("default", "{mtls: {mode: PERMISSIVE}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/reviews (workload-specific)"},
	{name: "workload PERMISSIVE over namespace STRICT",
		namespace: peerYAML("default", "{mtls: {mode: STRICT}}") + peerYAML("reviews-v2", "{selector: {matchLabels: {version: v2}}, mtls: {mode: PERMISSIVE}}"),
		mode:      MTLSPermissive, source: "PeerAuthentication {ns}/reviews-v2 (workload-specific)"},
	{name: "workload DISABLE over mesh STRICT",
		root: peerYAML("default", "{mtls: {mode: STRICT}}"), namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}"),
		mode: MTLSDisable, source: "PeerAuthentication {ns}/reviews (workload-specific)"},
	{name: "a policy selecting the stable pods only does not apply",
		namespace: peerYAML("default", "{mtls: {mode: STRICT}}") + peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: DISABLE}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "workload UNSET inherits namespace STRICT",
		root:      peerYAML("default", "{mtls: {mode: DISABLE}}"),
		namespace: peerYAML("default", "{mtls: {mode: STRICT}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "workload UNSET, namespace UNSET, mesh STRICT",
		root:      peerYAML("default", "{mtls: {mode: STRICT}}"),
		namespace: peerYAML("default", "{mtls: {mode: UNSET}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {root}/default (mesh-wide)"},

	// portLevelMtls: without ports every override counts; with ports, those ports do.
	{name: "port DISABLE under workload STRICT, no port given",
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		mode:      MTLSDisable, source: "PeerAuthentication {ns}/reviews (workload-specific, port 8080)"},
	{name: "port DISABLE under workload STRICT, another port given",
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		ports:     []uint32{9080},
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/reviews (workload-specific)"},
	{name: "port DISABLE under workload STRICT, that port given",
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		ports:     []uint32{8080},
		mode:      MTLSDisable, source: "PeerAuthentication {ns}/reviews (workload-specific, port 8080)"},
	{name: "port DISABLE under workload STRICT, both ports given",
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		ports:     []uint32{9080, 8080},
		mode:      MTLSDisable, source: "PeerAuthentication {ns}/reviews (workload-specific, port 8080)"},
	{name: "port UNSET inherits the workload's mode",
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: UNSET}}}"),
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/reviews (workload-specific)"},
	{name: "port STRICT over an inherited PERMISSIVE, that port given",
		namespace: peerYAML("default", "{mtls: {mode: PERMISSIVE}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {9080: {mode: STRICT}}}"),
		ports:     []uint32{9080},
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/reviews (workload-specific, port 9080)"},
	{name: "port STRICT over an inherited PERMISSIVE, no port given",
		namespace: peerYAML("default", "{mtls: {mode: PERMISSIVE}}") + peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {9080: {mode: STRICT}}}"),
		mode:      MTLSPermissive, source: "PeerAuthentication {ns}/default (namespace-wide)"},
	{name: "port PERMISSIVE under an inherited STRICT, no port given",
		root:      peerYAML("default", "{mtls: {mode: STRICT}}"),
		namespace: peerYAML("reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}, portLevelMtls: {8080: {mode: PERMISSIVE}, 9080: {mode: STRICT}}}"),
		mode:      MTLSPermissive, source: "PeerAuthentication {ns}/reviews (workload-specific, port 8080)"},
	{name: "port overrides of a policy selecting the stable pods do not apply",
		namespace: peerYAML("default", "{mtls: {mode: STRICT}}") + peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, portLevelMtls: {8080: {mode: DISABLE}}}"),
		ports:     []uint32{8080},
		mode:      MTLSStrict, source: "PeerAuthentication {ns}/default (namespace-wide)"},
}

// Specs shared by the policies below.
const (
	rulesAllowShop = "rules: [{from: [{source: {namespaces: [shop]}}]}]"
	rulesDenyAdmin = "action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]"
	rulesJWT       = "jwtRules: [{issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks'}]"
)

var parityCases = []struct {
	name            string
	root, namespace string // manifests applied in each
	want            []Miss // Namespace "root" or "ns"
}{
	{name: "no policies"},
	{name: "AuthorizationPolicy pinned to the stable version",
		namespace: authzYAML("reviews-viewer", "{selector: {matchLabels: {version: v1}}, "+rulesAllowShop+"}"),
		want:      []Miss{{KindAuthorizationPolicy, "ns", "reviews-viewer", "version=v1", "version=v2"}}},
	{name: "AuthorizationPolicy without selector",
		namespace: authzYAML("shop-only", "{"+rulesAllowShop+"}")},
	{name: "AuthorizationPolicy selecting app=reviews",
		namespace: authzYAML("reviews-viewer", "{selector: {matchLabels: {app: reviews}}, "+rulesAllowShop+"}")},
	{name: "AuthorizationPolicy for another app",
		namespace: authzYAML("ratings-viewer", "{selector: {matchLabels: {app: ratings}}, "+rulesAllowShop+"}")},
	{name: "AuthorizationPolicy selecting the canary only",
		namespace: authzYAML("reviews-v2-viewer", "{selector: {matchLabels: {version: v2}}, "+rulesAllowShop+"}")},
	{name: "RequestAuthentication pinned to v1",
		namespace: jwtYAML("reviews-jwt", "{selector: {matchLabels: {app: reviews, version: v1}}, "+rulesJWT+"}"),
		want:      []Miss{{KindRequestAuthentication, "ns", "reviews-jwt", "app=reviews,version=v1", "version=v2"}}},
	{name: "PeerAuthentication pinned to v1",
		namespace: peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}"),
		want:      []Miss{{KindPeerAuthentication, "ns", "reviews-v1", "version=v1", "version=v2"}}},
	{name: "root-namespace AuthorizationPolicy selects in every namespace",
		root: authzYAML("deny-admin-v1", "{selector: {matchLabels: {version: v1}}, "+rulesDenyAdmin+"}"),
		want: []Miss{{KindAuthorizationPolicy, "root", "deny-admin-v1", "version=v1", "version=v2"}}},
	{name: "root-namespace RequestAuthentication selects in every namespace",
		root: jwtYAML("jwt-v1", "{selector: {matchLabels: {version: v1}}, "+rulesJWT+"}"),
		want: []Miss{{KindRequestAuthentication, "root", "jwt-v1", "version=v1", "version=v2"}}},
	{name: "root-namespace policies without selector apply to both",
		root: peerYAML("default", "{mtls: {mode: STRICT}}") + authzYAML("deny-admin", "{"+rulesDenyAdmin+"}") + jwtYAML("jwt", "{"+rulesJWT+"}")},
	{name: "root-namespace PeerAuthentication with a selector is ignored by Istio",
		root: peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}")},
	{name: "targetRefs attach to a waypoint, not to the pods",
		namespace: authzYAML("waypoint-only", "{targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}], "+rulesAllowShop+"}") +
			jwtYAML("waypoint-jwt", "{targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}], "+rulesJWT+"}")},
	{name: "a per-version copy protects the canary",
		namespace: authzYAML("reviews-v1-viewer", "{selector: {matchLabels: {version: v1}}, "+rulesAllowShop+"}") +
			authzYAML("reviews-v2-viewer", "{selector: {matchLabels: {version: v2}}, "+rulesAllowShop+"}") +
			peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}") +
			peerYAML("reviews-v2", "{selector: {matchLabels: {app: reviews, version: v2}}, mtls: {mode: STRICT}}")},
	{name: "a broader policy with the same rules covers the canary",
		namespace: authzYAML("reviews-v1-viewer", "{selector: {matchLabels: {version: v1}}, "+rulesAllowShop+"}") +
			authzYAML("shop-only", "{"+rulesAllowShop+"}")},
	{name: "a per-version copy with other rules does not",
		namespace: authzYAML("reviews-v1-viewer", "{selector: {matchLabels: {version: v1}}, "+rulesAllowShop+"}") +
			authzYAML("reviews-v2-viewer", "{selector: {matchLabels: {version: v2}}, rules: [{}]}") +
			peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}") +
			peerYAML("reviews-v2", "{selector: {matchLabels: {version: v2}}, mtls: {mode: PERMISSIVE}}"),
		want: []Miss{
			{KindPeerAuthentication, "ns", "reviews-v1", "version=v1", "version=v2"},
			{KindAuthorizationPolicy, "ns", "reviews-v1-viewer", "version=v1", "version=v2"},
		}},
	{name: "a namespace-wide PeerAuthentication does not stand in for a pinned one",
		namespace: peerYAML("default", "{mtls: {mode: STRICT}}") +
			peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}"),
		want: []Miss{{KindPeerAuthentication, "ns", "reviews-v1", "version=v1", "version=v2"}}},
	{name: "a PeerAuthentication copy istiod does not pick for the canary does not stand in",
		// a-reviews-v2 is created first, or in the same second with the name that sorts first.
		namespace: peerYAML("a-reviews-v2", "{selector: {matchLabels: {version: v2}}, mtls: {mode: PERMISSIVE}}") +
			peerYAML("b-reviews-v2", "{selector: {matchLabels: {version: v2}}, mtls: {mode: STRICT}}") +
			peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}"),
		want: []Miss{{KindPeerAuthentication, "ns", "reviews-v1", "version=v1", "version=v2"}}},
	{name: "every miss is named, by kind then namespace",
		root: authzYAML("deny-admin-v1", "{selector: {matchLabels: {version: v1}}, "+rulesDenyAdmin+"}"),
		namespace: jwtYAML("reviews-jwt", "{selector: {matchLabels: {version: v1}}, "+rulesJWT+"}") +
			authzYAML("reviews-viewer", "{selector: {matchLabels: {app: reviews, version: v1}}, "+rulesAllowShop+"}") +
			authzYAML("deny-other-namespaces", "{action: DENY, rules: [{from: [{source: {notNamespaces: [shop]}}]}]}") +
			peerYAML("reviews-v1", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}"),
		want: []Miss{
			{KindPeerAuthentication, "ns", "reviews-v1", "version=v1", "version=v2"},
			{KindAuthorizationPolicy, "ns", "reviews-viewer", "app=reviews,version=v1", "version=v2"},
			{KindAuthorizationPolicy, "root", "deny-admin-v1", "version=v1", "version=v2"},
			{KindRequestAuthentication, "ns", "reviews-jwt", "version=v1", "version=v2"},
		}},
}
