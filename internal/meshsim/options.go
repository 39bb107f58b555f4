package meshsim

import (
	"errors"
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Version is one deployed version of the service: a DestinationRule subset and the workload
// (Deployment) behind it, and, for an HTTPRoute, the Service that selects its pods alone.
type Version struct {
	Subset   string // DestinationRule subset name, e.g. "v1"; also its pods' version label
	Workload string // destination_workload label, e.g. "reviews-v1"
	// Service is the Service in Options.Namespace that selects only this version's pods, as
	// an HTTPRoute's backendRefs name it, e.g. "reviews-v1". Required with an HTTPRoute,
	// unused with a VirtualService.
	Service string
}

// Options say which routing object to follow, a VirtualService or an HTTPRoute, and which
// versions exist.
type Options struct {
	Istio     istioclient.Interface   // with VirtualService
	Gateway   gatewayclient.Interface // with HTTPRoute
	Namespace string                  // of the routing object, the workloads and their Services
	// VirtualService is the name of the VirtualService to follow; its hosts[0] is the service.
	VirtualService string
	// HTTPRoute is, instead, the name of a mesh HTTPRoute (GAMMA) to follow; its first
	// parentRef of kind Service is the service the callers call, its backendRefs name
	// Versions by their Service.
	HTTPRoute string
	Versions  []Version
}

func (o Options) validate() error {
	var errs []error
	switch {
	case o.VirtualService == "" && o.HTTPRoute == "":
		errs = append(errs, errors.New("neither VirtualService nor HTTPRoute is set"))
	case o.VirtualService != "" && o.HTTPRoute != "":
		errs = append(errs, errors.New("both VirtualService and HTTPRoute are set: the mesh follows one"))
	case o.VirtualService != "" && o.Istio == nil:
		errs = append(errs, errors.New("Istio client is nil"))
	case o.HTTPRoute != "" && o.Gateway == nil:
		errs = append(errs, errors.New("Gateway client is nil"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("Namespace is empty"))
	}
	if len(o.Versions) == 0 {
		errs = append(errs, errors.New("no Versions"))
	}
	subsets, services := map[string]bool{}, map[string]bool{}
	for i, v := range o.Versions {
		switch {
		case v.Subset == "" || v.Workload == "":
			errs = append(errs, fmt.Errorf("Versions[%d] needs both Subset and Workload", i))
		case subsets[v.Subset]:
			errs = append(errs, fmt.Errorf("Versions[%d]: subset %q given twice", i, v.Subset))
		}
		subsets[v.Subset] = true
		if o.HTTPRoute == "" {
			continue
		}
		switch {
		case v.Service == "":
			errs = append(errs, fmt.Errorf("Versions[%d] needs a Service to follow an HTTPRoute", i))
		case services[v.Service]:
			errs = append(errs, fmt.Errorf("Versions[%d]: Service %q given twice", i, v.Service))
		}
		services[v.Service] = true
	}
	return errors.Join(errs...)
}
