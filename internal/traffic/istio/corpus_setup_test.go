package istio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshroll/meshroll/internal/testenv"
	"github.com/meshroll/meshroll/internal/traffic/cluster"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// loadCorpus reads every file and lists a case per HTTP route that has a destination.
func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	files := map[string]*corpusFile{}
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(corpusDir, path)
		docs, err := decodeDocs(data)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		rel = filepath.ToSlash(rel)
		for _, d := range docs {
			if ns := corpusNamespaces[rel]; ns != "" && d.GetNamespace() == "" && d.GetKind() != "Namespace" {
				d.SetNamespace(ns)
			}
		}
		files[rel] = &corpusFile{name: rel, docs: docs}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	used, skipped := map[string]bool{}, map[string]bool{}
	var cases []corpusCase
	for _, name := range sortedKeys(files) {
		f := files[name]
		for _, d := range f.docs {
			if corpusResources[d.GetKind()] == "" {
				skipped[d.GetAPIVersion()+" "+d.GetKind()] = true
			}
		}
		if companion, ok := corpusCompanions[name]; ok {
			if files[companion] == nil {
				t.Fatalf("%s: companion %s is not in the corpus", name, companion)
			}
			used[companion] = true
			for _, d := range files[companion].docs {
				if d.GetKind() == "DestinationRule" {
					f.companions = append(f.companions, d)
				}
			}
		}
		for _, vs := range f.docs {
			if vs.GetKind() != "VirtualService" {
				continue
			}
			used[name] = true
			http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
			if len(http) == 0 {
				// No HTTP route: meshroll must refuse; the target is what its tcp or tls route splits.
				for _, section := range []string{"tcp", "tls"} {
					if routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", section); len(routes) > 0 {
						cases = append(cases, corpusCase{f, vs, "-", corpusTarget(f, vs, routes[0].(map[string]any)["route"])})
						break
					}
				}
			}
			for i, r := range http {
				r := r.(map[string]any)
				if len(hostsAndSubsets(r["route"])) == 0 {
					continue // a delegate: nothing of its own to steer
				}
				name, _ := r["name"].(string)
				if name == "" {
					name = fmt.Sprintf("http[%d]", i)
				}
				cases = append(cases, corpusCase{f, vs, name, corpusTarget(f, vs, r["route"])})
			}
		}
	}
	t.Logf("not applied (no part in routing, or no CRD in the test API server): %s", strings.Join(sortedKeys(skipped), ", "))
	for name := range files {
		if !used[name] {
			t.Errorf("%s has no VirtualService and goes with none: add it to corpusCompanions", name)
		}
	}
	return cases
}

func decodeDocs(data []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var docs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj.Object) > 0 {
			docs = append(docs, obj)
		}
	}
}

type hostSubset struct{ host, subset string }

// hostsAndSubsets lists the destinations of a route list (http, tcp or tls).
func hostsAndSubsets(routes any) []hostSubset {
	list, _ := routes.([]any)
	var out []hostSubset
	for _, rd := range list {
		d, _ := rd.(map[string]any)["destination"].(map[string]any)
		host, _ := d["host"].(string)
		subset, _ := d["subset"].(string)
		if host != "" {
			out = append(out, hostSubset{host, subset})
		}
	}
	return out
}

// corpusTarget is what a user would set to canary the route: the first destination with a
// subset is stable; the canary is the next destination with another subset, else a subset
// that a DestinationRule for the stable host defines (preferring one no route uses yet), else
// "canary" (which then is not defined). Destinations on several hosts are named by Service as
// well. A host-level split (no subsets) is named by Service: the next other host is the
// canary, else "<host>-canary".
func corpusTarget(f *corpusFile, vs *unstructured.Unstructured, routes any) Target {
	ns := vs.GetNamespace() // "" for the fresh namespace: a placeholder all its hosts share
	dests := hostsAndSubsets(routes)
	t := Target{VirtualService: vs.GetName()}
	var stable *hostSubset
	hosts := map[string]bool{}
	for i, d := range dests {
		if d.subset != "" {
			hosts[cluster.ServiceKey(d.host, ns)] = true
			if stable == nil {
				stable = &dests[i]
			}
		}
	}
	if stable == nil {
		t.StableService, t.CanaryService = dests[0].host, canaryHost(dests[0].host)
		for _, d := range dests[1:] {
			if cluster.ServiceKey(d.host, ns) != cluster.ServiceKey(dests[0].host, ns) {
				t.CanaryService = d.host
				break
			}
		}
		return t
	}
	t.StableSubset = stable.subset
	canary := hostSubset{stable.host, ""}
	for _, d := range dests {
		if d.subset != "" && d.subset != stable.subset {
			canary = d
			break
		}
	}
	if canary.subset == "" {
		canary.subset = ruleSubset(f, vs, stable.host, stable.subset)
	}
	t.CanarySubset = canary.subset
	if len(hosts) > 1 {
		t.StableService, t.CanaryService = stable.host, canary.host
	}
	return t
}

// ruleSubset picks a subset that a DestinationRule of the file defines for host, other than
// stable: one that no route of the VirtualService uses yet if there is one.
func ruleSubset(f *corpusFile, vs *unstructured.Unstructured, host, stable string) string {
	usedSubsets := map[string]bool{}
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	for _, r := range http {
		for _, d := range hostsAndSubsets(r.(map[string]any)["route"]) {
			usedSubsets[d.subset] = true
		}
	}
	var defined []string
	for _, dr := range append(slices.Clone(f.docs), f.companions...) {
		drHost, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		if dr.GetKind() != "DestinationRule" || cluster.ServiceKey(drHost, dr.GetNamespace()) != cluster.ServiceKey(host, vs.GetNamespace()) {
			continue
		}
		subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
		for _, s := range subsets {
			if name, _ := s.(map[string]any)["name"].(string); name != stable {
				defined = append(defined, name)
			}
		}
	}
	for _, s := range defined {
		if !usedSubsets[s] {
			return s
		}
	}
	if len(defined) > 0 {
		return defined[0]
	}
	return "canary"
}

// canaryHost names the canary Service beside a stable one: reviews → reviews-canary,
// reviews.prod.svc.cluster.local → reviews-canary.prod.svc.cluster.local.
func canaryHost(host string) string {
	name, rest, found := strings.Cut(host, ".")
	if !found {
		return name + "-canary"
	}
	return name + "-canary." + rest
}

// namespaceLocks serialize the cases that share a namespace their files pin.
var namespaceLocks sync.Map

func lockNamespaces(namespaces []string) (unlock func()) {
	var held []*sync.Mutex
	for _, ns := range namespaces { // sorted: no two cases wait for each other
		m, _ := namespaceLocks.LoadOrStore(ns, &sync.Mutex{})
		m.(*sync.Mutex).Lock()
		held = append(held, m.(*sync.Mutex))
	}
	return func() {
		for _, m := range held {
			m.Unlock()
		}
	}
}

// corpusResources are the kinds applied from the corpus; the others (Deployments,
// ServiceAccounts, and custom resources whose CRDs the test API server does not have: Argo
// Rollouts' Rollout, Riskified's DynamicEnv) play no part in routing.
var corpusResources = map[string]string{
	"VirtualService": "virtualservices", "DestinationRule": "destinationrules",
	"Gateway": "gateways", "ServiceEntry": "serviceentries",
	"Namespace": "namespaces", "Service": "services",
}

// setUp applies the case's file (its namespaced documents that name no namespace into a fresh
// one) and sets target.Namespace; it returns why the API server did not store the case's
// VirtualService, if it did not.
func setUp(t *testing.T, env *testenv.Env, c corpusCase, target *Target) (stored error) {
	t.Helper()
	ctx := t.Context()
	fresh := env.Namespace(t)
	pinned := c.file.pinned()
	t.Cleanup(lockNamespaces(pinned))
	for _, ns := range pinned {
		_, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		// An earlier case of this namespace left its objects (steered): start from the files.
		for _, r := range []string{"virtualservices", "destinationrules", "gateways", "serviceentries"} {
			gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: r}
			if err := env.Dynamic.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	target.Namespace = c.vs.GetNamespace()
	if target.Namespace == "" {
		target.Namespace = fresh
	}
	services := map[string]bool{} // the target's Services, as name.namespace
	for _, svc := range []string{target.StableService, target.CanaryService} {
		if key := cluster.ServiceKey(svc, target.Namespace); svc != "" && strings.Count(key, ".") == 1 {
			services[key] = true
		}
	}
	for _, d := range append(slices.Clone(c.file.docs), c.file.companions...) {
		d = d.DeepCopy()
		if d.GetNamespace() == "" && d.GetKind() != "Namespace" {
			d.SetNamespace(fresh)
		}
		switch kind := d.GetKind(); {
		case corpusResources[kind] == "":
			continue
		case kind == "Service" && !services[d.GetName()+"."+d.GetNamespace()]:
			continue // Services matter only where the target names versions by Service
		case kind == "Service":
			delete(services, d.GetName()+"."+d.GetNamespace())
		}
		err := create(ctx, env, d, corpusLax[c.file.name])
		switch {
		case err != nil && d.GetKind() == "VirtualService" && d.GetName() == c.vs.GetName() && corpusLax[c.file.name]:
			stored = err
		case err != nil && corpusLax[c.file.name] && d.GetKind() == "VirtualService":
			// Another VirtualService of a malformed file: its own case reports it.
		case apierrors.IsAlreadyExists(err) && (d.GetKind() == "Namespace" || d.GetKind() == "Service"):
		case err != nil:
			t.Fatalf("failed to apply %s %s/%s of %s: %v", d.GetKind(), d.GetNamespace(), d.GetName(), c.file.name, err)
		}
	}
	// The Services a host-level split names, which the file does not define, exist in a
	// user's cluster: create them.
	for key := range services {
		name, ns, _ := strings.Cut(key, ".")
		_, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
		}}
		if _, err := env.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	return stored
}

// create stores a document with kubectl's default strict field validation; for a file that
// fails it, as `kubectl apply --validate=false` would.
func create(ctx context.Context, env *testenv.Env, d *unstructured.Unstructured, lax bool) error {
	gv, err := schema.ParseGroupVersion(d.GetAPIVersion())
	if err != nil {
		return err
	}
	client := env.Dynamic.Resource(gv.WithResource(corpusResources[d.GetKind()]))
	var ri interface {
		Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
	} = client
	if d.GetKind() != "Namespace" {
		ri = client.Namespace(d.GetNamespace())
	}
	_, err = ri.Create(ctx, d, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
	if err != nil && lax && apierrors.IsBadRequest(err) {
		_, err = ri.Create(ctx, d, metav1.CreateOptions{FieldValidation: metav1.FieldValidationIgnore})
	}
	return err
}

func getVS(t *testing.T, env *testenv.Env, target Target) *unstructured.Unstructured {
	t.Helper()
	obj, err := env.Dynamic.Resource(vsResource("v1")).Namespace(target.Namespace).Get(context.Background(), target.VirtualService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}
