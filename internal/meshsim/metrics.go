package meshsim

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Istio's standard metric names and labels (istio.io "Istio Standard Metrics"), the subset of
// labels that canary analysis queries use.
const (
	requestsTotalName   = "istio_requests_total"
	requestDurationName = "istio_request_duration_milliseconds"

	reporterSource      = "source"
	reporterDestination = "destination"

	// LoadWorkload is the source_workload of the requests Load sends.
	LoadWorkload = "loadgen"

	unknown = "unknown"

	// The connection_security_policy values a destination proxy reports.
	securityMutualTLS = "mutual_tls"
	securityNone      = "none"
)

var labelNames = []string{
	"reporter",
	"source_workload",
	"source_workload_namespace",
	"destination_workload",
	"destination_workload_namespace",
	"destination_service",
	"destination_service_name",
	"destination_service_namespace",
	"destination_version",
	"destination_canonical_service",
	"destination_canonical_revision",
	"request_protocol",
	"response_code",
	"response_flags",
	"connection_security_policy",
}

// DurationBuckets are Istio's default buckets for istio_request_duration_milliseconds.
var DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: requestsTotalName,
			Help: "Counter of requests handled by an Istio proxy.",
		}, labelNames),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    requestDurationName,
			Help:    "Histogram of request durations in milliseconds.",
			Buckets: DurationBuckets,
		}, labelNames),
	}
	m.registry.MustRegister(m.requests, m.duration)
	return m
}

// sample is what one proxy reports about one request.
type sample struct {
	reporter  string
	namespace string // of the source workload
	service   service
	app       string   // the versions' app label (canonical service); "" for service.name
	version   *Version // nil: the request reached no workload
	code      int
	flags     string // Envoy response flags, "-" for none
	elapsed   time.Duration
	plaintext bool // the connection reached the version's proxy without mutual TLS
}

func (m *metrics) record(s sample) {
	workload, workloadNS, version, canonicalService, canonicalRevision := unknown, unknown, unknown, unknown, "latest"
	if s.version != nil {
		// Pods carry app=<service> and version=<subset>: Istio takes the canonical service
		// from app and the canonical revision and destination_version from version.
		workload, workloadNS, version = s.version.Workload, s.namespace, s.version.Subset
		canonicalService, canonicalRevision = s.service.name, s.version.Subset
		if s.app != "" {
			canonicalService = s.app
		}
	}
	// Only the server's proxy knows how the connection came in: mutual TLS from the client's
	// proxy, or plaintext ("none"); the client's proxy reports "unknown".
	security := unknown
	switch {
	case s.reporter == reporterDestination && s.plaintext:
		security = securityNone
	case s.reporter == reporterDestination:
		security = securityMutualTLS
	}
	values := []string{
		s.reporter,
		LoadWorkload,
		s.namespace,
		workload,
		workloadNS,
		s.service.fqdn,
		s.service.name,
		s.service.namespace,
		version,
		canonicalService,
		canonicalRevision,
		"http",
		strconv.Itoa(s.code),
		s.flags,
		security,
	}
	m.requests.WithLabelValues(values...).Inc()
	m.duration.WithLabelValues(values...).Observe(float64(s.elapsed) / float64(time.Millisecond))
}
