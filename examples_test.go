package main

import (
	"fmt"
	"os"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshroll/meshroll/internal/config"
)

// The in-cluster Job of examples/kubernetes/job.yaml gives meshroll valid input, runs with the
// ServiceAccount of examples/rbac.yaml, is never retried, and has somewhere to write its
// files in a read-only image.
func TestKubernetesJobExample(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("examples/kubernetes/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var job map[string]any
	if err := yaml.Unmarshal(raw, &job); err != nil {
		t.Fatal(err)
	}
	spec := mapOf(job["spec"])
	pod := mapOf(mapOf(spec["template"])["spec"])
	if job["kind"] != "Job" || fmt.Sprint(spec["backoffLimit"]) != "0" || pod["serviceAccountName"] != "meshroll" || pod["restartPolicy"] != "Never" {
		t.Errorf("kind %v, backoffLimit %v, serviceAccountName %v, restartPolicy %v: want a Job never retried, as the ServiceAccount meshroll",
			job["kind"], spec["backoffLimit"], pod["serviceAccountName"], pod["restartPolicy"])
	}
	containers := anyList(pod["containers"])
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	c := mapOf(containers[0])
	vars := map[string]string{}
	for _, e := range anyList(c["env"]) {
		vars[fmt.Sprint(mapOf(e)["name"])] = fmt.Sprint(mapOf(e)["value"])
	}
	if _, err := config.Load(environ(vars)); err != nil {
		t.Errorf("meshroll rejects the Job's input: %v", err)
	}
	mounted := false
	for _, m := range anyList(c["volumeMounts"]) {
		mounted = mounted || mapOf(m)["mountPath"] == vars["MESHROLL_OUTPUT_DIR"]
	}
	if !mounted {
		t.Errorf("MESHROLL_OUTPUT_DIR=%s is not a mounted volume; the nonroot image has no writable directory", vars["MESHROLL_OUTPUT_DIR"])
	}
	if c["terminationMessagePolicy"] != "FallbackToLogsOnError" {
		t.Errorf("terminationMessagePolicy %v: the pod should say why the run failed", c["terminationMessagePolicy"])
	}
}
