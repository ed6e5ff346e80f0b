package deploytest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// TestHelmHooksAsHelmSeesThem sorts the rendered chart with the code
// `helm install` uses (releaseutil.SortManifests): the topics Job and the
// test Pod are hooks with the events and delete policies intended, nothing
// else is a hook, and the ConfigMap is applied before the Deployment.
func TestHelmHooksAsHelmSeesThem(t *testing.T) {
	rendered, err := renderChart(t, valuesFile(t, "sasl-tls-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// As `helm install` does: NOTES.txt and the partials are not manifests.
	files := map[string]string{}
	for name, text := range rendered {
		if base := filepath.Base(name); base != "NOTES.txt" && !strings.HasPrefix(base, "_") {
			files[name] = text
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, chartutil.DefaultCapabilities.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		t.Fatalf("helm cannot sort the manifests: %v", err)
	}

	byKind := map[string]*release.Hook{}
	for _, h := range hooks {
		if byKind[h.Kind] != nil {
			t.Errorf("two %s hooks", h.Kind)
		}
		byKind[h.Kind] = h
	}
	if len(hooks) != 2 || byKind["Job"] == nil || byKind["Pod"] == nil {
		t.Fatalf("hooks %v: want the topics Job and the test Pod", hooks)
	}
	job, test := byKind["Job"], byKind["Pod"]
	if !slices.Equal(job.Events, []release.HookEvent{release.HookPreInstall, release.HookPreUpgrade}) {
		t.Errorf("topics Job runs on %v, want pre-install and pre-upgrade", job.Events)
	}
	for _, p := range []release.HookDeletePolicy{release.HookBeforeHookCreation, release.HookSucceeded} {
		if !slices.Contains(job.DeletePolicies, p) {
			t.Errorf("topics Job delete policies %v lack %s", job.DeletePolicies, p)
		}
	}
	if slices.Contains(job.DeletePolicies, release.HookFailed) {
		t.Error("a failed topics Job is deleted: its logs would be lost")
	}
	if !slices.Equal(test.Events, []release.HookEvent{release.HookTest}) {
		t.Errorf("test Pod runs on %v, want test", test.Events)
	}
	if !slices.Contains(test.DeletePolicies, release.HookBeforeHookCreation) {
		t.Errorf("test Pod delete policies %v: without before-hook-creation a second helm test fails", test.DeletePolicies)
	}

	order := map[string]int{}
	for i, m := range manifests {
		if m.Head == nil || m.Head.Kind == "" {
			t.Errorf("manifest %s has no kind", m.Name)
			continue
		}
		if m.Head.Kind == "Job" || m.Head.Kind == "Pod" {
			t.Errorf("%s %s is applied as a release resource, not a hook", m.Head.Kind, m.Name)
		}
		order[m.Head.Kind] = i
	}
	if order["ConfigMap"] >= order["Deployment"] {
		t.Errorf("install order %v: the ConfigMap must come before the Deployment", order)
	}
}

// TestHelmKubeVersion: the chart's kubeVersion admits the versions its API
// groups exist in (policy/v1 and autoscaling/v2 since 1.23; 1.25 for the
// rest). (Helm as a library assumes v1.20 when offline, the helm binary its
// own client-go's version: `helm template` works with the binary.)
func TestHelmKubeVersion(t *testing.T) {
	c := loadChart(t).Metadata.KubeVersion
	if c == "" {
		t.Fatal("Chart.yaml has no kubeVersion")
	}
	for v, want := range map[string]bool{
		"v1.24.9": false,
		"v1.25.0": true,
		"v1.31.2": true,
		"v1.35.0": true,
	} {
		if got := chartutil.IsCompatibleRange(c, v); got != want {
			t.Errorf("kubeVersion %q admits %s: %v, want %v", c, v, got, want)
		}
	}
}
