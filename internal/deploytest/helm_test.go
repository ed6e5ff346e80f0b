package deploytest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	interlockservice "github.com/interlock-go/interlock/service"
)

// chartDir is the Helm chart, relative to this package's directory.
var chartDir = filepath.Join(repoRoot, "deploy", "helm", "interlock")

// The release every render uses.
const (
	releaseName = "orders"
	releaseNS   = "prod"
)

// The KEDA and Prometheus Operator resources the chart makes are custom
// resources: they are decoded strictly into these local types, which hold
// the fields the chart uses as the CRDs spell them, so a misspelt field or a
// value of the wrong type (a number where KEDA wants a string) fails.

type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Env []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName,omitempty"`
		} `json:"env,omitempty"`
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef,omitempty"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// manifests is one render of the chart, every document decoded strictly.
type manifests struct {
	files map[string]string // template path -> rendered text

	configMap      *corev1.ConfigMap
	deployment     *appsv1.Deployment
	service        *corev1.Service
	pdb            *policyv1.PodDisruptionBudget
	hpa            *autoscalingv2.HorizontalPodAutoscaler
	job            *batchv1.Job
	testPod        *corev1.Pod
	scaledObject   *scaledObject
	triggerAuth    *triggerAuthentication
	serviceMonitor *serviceMonitor

	// every object's kind, metadata and template file
	objects []object
	notes   string
}

type object struct {
	file, kind string
	meta       metav1.ObjectMeta
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// valuesFile reads one of the chart's ci/*-values.yaml value sets.
func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, "ci", name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// with returns a copy of vals with the dotted path set to v.
func with(vals map[string]any, path string, v any) map[string]any {
	out := deepCopy(vals)
	m := out
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
	return out
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = deepCopy(sub)
		}
		out[k] = v
	}
	return out
}

// renderChart renders the chart as `helm install --dry-run` would: the
// values coalesced with values.yaml and validated against
// values.schema.json, then every template through Helm's engine in strict
// mode (a reference to a missing value is an error).
func renderChart(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// mustRender renders the chart and decodes every manifest strictly into its
// Kubernetes API type (or the local CRD types above): an unknown field, a
// field of the wrong type or an unexpected kind fails the test.
func mustRender(t *testing.T, vals map[string]any) *manifests {
	t.Helper()
	files, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	m := &manifests{files: files}
	for _, file := range slices.Sorted(maps.Keys(files)) {
		text := files[file]
		base := filepath.Base(file)
		if base == "NOTES.txt" {
			m.notes = text
			continue
		}
		if strings.HasPrefix(base, "_") {
			continue
		}
		for _, doc := range docSep.Split(text, -1) {
			var head struct {
				metav1.TypeMeta `json:",inline"`
				Metadata        metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", file, err, doc)
			}
			if head.Kind == "" && head.APIVersion == "" {
				if strings.TrimSpace(stripComments(doc)) != "" {
					t.Fatalf("%s: a document without apiVersion and kind:\n%s", file, doc)
				}
				continue
			}
			var target any
			gvk := head.APIVersion + "/" + head.Kind
			switch gvk {
			case "v1/ConfigMap":
				target = set(&m.configMap, t, gvk)
			case "apps/v1/Deployment":
				target = set(&m.deployment, t, gvk)
			case "v1/Service":
				target = set(&m.service, t, gvk)
			case "policy/v1/PodDisruptionBudget":
				target = set(&m.pdb, t, gvk)
			case "autoscaling/v2/HorizontalPodAutoscaler":
				target = set(&m.hpa, t, gvk)
			case "batch/v1/Job":
				target = set(&m.job, t, gvk)
			case "v1/Pod":
				target = set(&m.testPod, t, gvk)
			case "keda.sh/v1alpha1/ScaledObject":
				target = set(&m.scaledObject, t, gvk)
			case "keda.sh/v1alpha1/TriggerAuthentication":
				target = set(&m.triggerAuth, t, gvk)
			case "monitoring.coreos.com/v1/ServiceMonitor":
				target = set(&m.serviceMonitor, t, gvk)
			default:
				t.Fatalf("%s: unexpected %s (a Secret, or a kind this test does not know)", file, gvk)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
				t.Fatalf("%s: %s does not decode strictly: %v\n%s", file, gvk, err, doc)
			}
			m.objects = append(m.objects, object{file: file, kind: head.Kind, meta: head.Metadata})
		}
	}
	if m.configMap == nil || m.deployment == nil || m.service == nil {
		t.Fatalf("the render lacks a ConfigMap, Deployment or Service: %v", m.objects)
	}
	return m
}

// set allocates *p, failing if the render already had an object of that
// kind (the chart makes one of each).
func set[T any](p **T, t *testing.T, gvk string) *T {
	t.Helper()
	if *p != nil {
		t.Fatalf("two %s objects", gvk)
	}
	*p = new(T)
	return *p
}

func stripComments(doc string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (m *manifests) container() corev1.Container {
	return m.deployment.Spec.Template.Spec.Containers[0]
}

// valueSets are the chart's ci/*-values.yaml files, each rendered and linted.
var valueSets = []string{
	"defaults-values.yaml",
	"sasl-tls-values.yaml",
	"hpa-values.yaml",
	"keda-values.yaml",
	"servicemonitor-values.yaml",
}

func TestHelmValueSetsRenderStrictly(t *testing.T) {
	for _, name := range valueSets {
		t.Run(name, func(t *testing.T) {
			m := mustRender(t, valuesFile(t, name))
			checkCommon(t, m)
		})
	}
}

// checkCommon asserts what holds for every value set.
func checkCommon(t *testing.T, m *manifests) {
	t.Helper()
	d := m.deployment
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := m.container()

	// Recommended labels on every object, and the selector is a subset of
	// the pod labels.
	for _, o := range m.objects {
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if o.meta.Labels[k] == "" {
				t.Errorf("%s %s (%s) lacks the label %s: %v", o.kind, o.meta.Name, o.file, k, o.meta.Labels)
			}
		}
		if o.meta.Labels["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("%s %s: app.kubernetes.io/instance %q, want the release %q", o.kind, o.meta.Name, o.meta.Labels["app.kubernetes.io/instance"], releaseName)
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("deployment selector %v: %v", d.Spec.Selector, err)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	if !sel.Matches(podLabels) {
		t.Errorf("the deployment's selector %v does not match its pods' labels %v", d.Spec.Selector, podLabels)
	}
	if !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) || len(m.service.Spec.Selector) == 0 {
		t.Errorf("the service's selector %v does not match the pods' labels %v", m.service.Spec.Selector, podLabels)
	}
	if m.pdb != nil {
		s, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("the PodDisruptionBudget's selector %v does not match the pods' labels %v", m.pdb.Spec.Selector, podLabels)
		}
	}

	// The settings come from the ConfigMap; the instance ID from the pod name.
	cm := m.configMap.Data
	if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
		return e.ConfigMapRef != nil && e.ConfigMapRef.Name == m.configMap.Name
	}) {
		t.Errorf("the container does not take its environment from the ConfigMap %s: %+v", m.configMap.Name, c.EnvFrom)
	}
	for _, k := range []string{"INTERLOCK_NAME", "INTERLOCK_BROKERS", "INTERLOCK_ROLES", "INTERLOCK_HTTP_ADDR", "INTERLOCK_PARTITIONS", "INTERLOCK_REPLICATION_FACTOR"} {
		if cm[k] == "" {
			t.Errorf("ConfigMap lacks %s: %v", k, cm)
		}
	}
	instance := envVar(c.Env, "INTERLOCK_INSTANCE_ID")
	if instance == nil || instance.ValueFrom == nil || instance.ValueFrom.FieldRef == nil || instance.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("INTERLOCK_INSTANCE_ID is not the pod name from the downward API: %+v", instance)
	}
	if !slices.Equal(c.Args, []string{"serve"}) || len(c.Command) != 0 {
		t.Errorf("container command %q args %q, want the image's entry point with serve", c.Command, c.Args)
	}

	// Probes: /healthz and /readyz on the port serve listens on.
	_, port, ok := strings.Cut(cm["INTERLOCK_HTTP_ADDR"], ":")
	if !ok {
		t.Fatalf("INTERLOCK_HTTP_ADDR %q has no port", cm["INTERLOCK_HTTP_ADDR"])
	}
	httpPort := -1
	fmt.Sscan(port, &httpPort)
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startup", c.StartupProbe, "/healthz"},
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET, have %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe path %q, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := containerPort(t, c, p.probe.HTTPGet.Port.String()); got != httpPort {
			t.Errorf("%s probe on port %v (%d), serve listens on %d", p.name, p.probe.HTTPGet.Port.String(), got, httpPort)
		}
	}
	if sp := c.StartupProbe; sp != nil && sp.PeriodSeconds*sp.FailureThreshold < 300 {
		t.Errorf("the startup probe gives up after %d s: want at least 5 minutes to start", sp.PeriodSeconds*sp.FailureThreshold)
	}
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30 {
		t.Errorf("terminationGracePeriodSeconds %v: serve drains for up to 30 s, want more", g)
	}

	// The Service reaches serve's HTTP port by name.
	if len(m.service.Spec.Ports) == 0 {
		t.Fatal("the Service has no port")
	}
	for _, sp := range m.service.Spec.Ports {
		if got := containerPort(t, c, sp.TargetPort.String()); got != httpPort {
			t.Errorf("Service port %s targets %s (%d), serve listens on %d", sp.Name, sp.TargetPort.String(), got, httpPort)
		}
	}

	// A changed setting rolls the pods: the checksum is the rendered ConfigMap's.
	sum := sha256.Sum256([]byte(m.files["interlock/templates/configmap.yaml"]))
	if got := d.Spec.Template.Annotations["checksum/config"]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("checksum/config %q is not the ConfigMap's sha256 %x", got, sum)
	}

	// Non-root, read-only, no service account token: the pods never call
	// the Kubernetes API.
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Error("the pods may run as root")
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("the container's security context is not locked down: %+v", c.SecurityContext)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the pods mount a service account token they do not need")
	}

	checkNames(t, m)
	checkSecretsAreReferences(t, m)
	checkTopicsJob(t, m)
	checkTestHook(t, m, httpPort)

	if !strings.Contains(m.notes, "rollout status") || !strings.Contains(m.notes, m.deployment.Name) {
		t.Errorf("NOTES.txt does not say how to watch the rollout:\n%s", m.notes)
	}
}

// checkNames applies the API server's rules for names that strict
// decoding cannot see: object names, label and annotation keys and values,
// and in each pod the volume, port and variable names and the references
// between them.
func checkNames(t *testing.T, m *manifests) {
	t.Helper()
	check := func(what string, errs []string) {
		t.Helper()
		if len(errs) > 0 {
			t.Errorf("%s: %s", what, strings.Join(errs, "; "))
		}
	}
	for _, o := range m.objects {
		what := o.kind + " " + o.meta.Name
		check(what+": name", validation.IsDNS1123Subdomain(o.meta.Name))
		if o.kind == "Service" || o.kind == "Job" {
			// A Service's name is a DNS label; a Job's becomes its pods' job-name label.
			check(what+": name", validation.IsDNS1123Label(o.meta.Name))
		}
		for k, v := range o.meta.Labels {
			check(what+": label "+k, validation.IsQualifiedName(k))
			check(what+": label "+k, validation.IsValidLabelValue(v))
		}
		for k := range o.meta.Annotations {
			check(what+": annotation "+k, validation.IsQualifiedName(k))
		}
	}
	pods := map[string]corev1.PodSpec{"Deployment": m.deployment.Spec.Template.Spec}
	if m.job != nil {
		pods["Job"] = m.job.Spec.Template.Spec
	}
	if m.testPod != nil {
		pods["test Pod"] = m.testPod.Spec
	}
	for what, ps := range pods {
		volumes := map[string]bool{}
		for _, v := range ps.Volumes {
			check(what+": volume "+v.Name, validation.IsDNS1123Label(v.Name))
			if volumes[v.Name] {
				t.Errorf("%s: two volumes named %s", what, v.Name)
			}
			volumes[v.Name] = true
		}
		for _, c := range ps.Containers {
			check(what+": container "+c.Name, validation.IsDNS1123Label(c.Name))
			if c.Image == "" || strings.ContainsAny(c.Image, " \t") {
				t.Errorf("%s: container %s image %q", what, c.Name, c.Image)
			}
			for _, p := range c.Ports {
				check(what+": port "+p.Name, validation.IsValidPortName(p.Name))
				check(what+": port "+p.Name, validation.IsValidPortNum(int(p.ContainerPort)))
			}
			for _, e := range c.Env {
				check(what+": env "+e.Name, validation.IsEnvVarName(e.Name))
			}
			mounts := map[string]bool{}
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s: container %s mounts %s, which is not a volume", what, c.Name, vm.Name)
				}
				if mounts[vm.MountPath] {
					t.Errorf("%s: container %s mounts two volumes at %s", what, c.Name, vm.MountPath)
				}
				mounts[vm.MountPath] = true
			}
		}
	}
	for k := range m.configMap.Data {
		check("ConfigMap key "+k, validation.IsConfigMapKey(k))
		check("ConfigMap key "+k, validation.IsEnvVarName(k))
	}
}

func envVar(env []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

// containerPort resolves a port given by name or number against the
// container's ports.
func containerPort(t *testing.T, c corev1.Container, port string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return int(p.ContainerPort)
		}
	}
	return -1
}

// secretSettings are the settings whose values are secrets, read from
// package service's configuration table: they may reach the pods only as
// files, through their _FILE variables.
var secretSettings = func() []string {
	var out []string
	for _, row := range strings.Split(interlockservice.Table(), "\n") {
		cols := strings.Split(row, "|")
		if len(cols) < 6 || !strings.Contains(cols[5], "secret:") {
			continue
		}
		env, _, _ := strings.Cut(strings.TrimSpace(cols[2]), ",")
		out = append(out, strings.Trim(env, "`"))
	}
	return out
}()

// checkSecretsAreReferences asserts that the chart makes no Secret, passes
// no secret as a value or env reference, and that every *_FILE setting names
// a file mounted from an existing Secret.
func checkSecretsAreReferences(t *testing.T, m *manifests) {
	t.Helper()
	for _, o := range m.objects {
		if o.kind == "Secret" {
			t.Errorf("the chart makes a Secret %s: it must only reference existing ones", o.meta.Name)
		}
	}
	for _, k := range secretSettings {
		if _, ok := m.configMap.Data[k]; ok {
			t.Errorf("the ConfigMap holds the secret %s itself", k)
		}
	}
	pods := map[string]corev1.PodSpec{"deployment": m.deployment.Spec.Template.Spec}
	if m.job != nil {
		pods["job"] = m.job.Spec.Template.Spec
	}
	for what, ps := range pods {
		for _, c := range ps.Containers {
			for _, e := range c.Env {
				if slices.Contains(secretSettings, e.Name) {
					t.Errorf("%s: the secret %s is in the environment (want %s_FILE)", what, e.Name, e.Name)
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("%s: %s comes from a Secret as an env variable: secrets are mounted files", what, e.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					t.Errorf("%s: envFrom a Secret %s: secrets are mounted files", what, e.SecretRef.Name)
				}
			}
			// Each _FILE setting is a file in a mounted Secret volume.
			settings := maps.Clone(m.configMap.Data)
			if what == "job" {
				settings = map[string]string{}
				for _, e := range c.Env {
					settings[e.Name] = e.Value
				}
			}
			for k, path := range settings {
				if !strings.HasPrefix(k, "INTERLOCK_") || !strings.HasSuffix(k, "_FILE") {
					continue
				}
				if secret, key := mountedSecretKey(ps, c, path); secret == "" {
					t.Errorf("%s: %s=%s is not a file of a mounted Secret", what, k, path)
				} else {
					t.Logf("%s: %s is key %q of Secret %q", what, k, key, secret)
				}
			}
		}
	}
}

// mountedSecretKey returns the Secret and key that file comes from in the
// container, or "" when no Secret volume mount provides it.
func mountedSecretKey(ps corev1.PodSpec, c corev1.Container, file string) (secret, key string) {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			if len(v.Secret.Items) == 0 {
				return v.Secret.SecretName, rel
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					return v.Secret.SecretName, it.Key
				}
			}
		}
	}
	return "", ""
}

func checkTopicsJob(t *testing.T, m *manifests) {
	t.Helper()
	j := m.job
	if j == nil {
		t.Fatal("no topics Job")
	}
	hooks := strings.Split(j.Annotations["helm.sh/hook"], ",")
	for _, h := range []string{"pre-install", "pre-upgrade"} {
		if !slices.Contains(hooks, h) {
			t.Errorf("topics Job hook %q lacks %s", j.Annotations["helm.sh/hook"], h)
		}
	}
	if p := j.Annotations["helm.sh/hook-delete-policy"]; !strings.Contains(p, "before-hook-creation") {
		t.Errorf("topics Job hook-delete-policy %q: want before-hook-creation, so an upgrade can run it again", p)
	}
	if _, ok := j.Annotations["helm.sh/hook-weight"]; !ok {
		t.Error("topics Job has no hook weight")
	}
	ps := j.Spec.Template.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever && ps.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("topics Job restartPolicy %q", ps.RestartPolicy)
	}
	if j.Spec.BackoffLimit == nil || j.Spec.ActiveDeadlineSeconds == nil {
		t.Error("topics Job has no backoffLimit or activeDeadlineSeconds: a Kafka outage would hang the release")
	}
	c := ps.Containers[0]
	if !slices.Equal(c.Args, []string{"topics", "create"}) {
		t.Errorf("topics Job args %q, want [topics create]", c.Args)
	}
	if c.Image != m.container().Image {
		t.Errorf("topics Job image %q, the service's is %q", c.Image, m.container().Image)
	}
	// The hook runs before the ConfigMap exists: it carries the settings
	// that decide the topics itself, with the ConfigMap's values.
	if len(c.EnvFrom) != 0 {
		t.Errorf("topics Job uses envFrom %+v: the release's ConfigMap does not exist yet when a pre-install hook runs", c.EnvFrom)
	}
	for _, k := range []string{"INTERLOCK_NAME", "INTERLOCK_BROKERS", "INTERLOCK_PARTITIONS", "INTERLOCK_REPLICATION_FACTOR"} {
		e := envVar(c.Env, k)
		if e == nil || e.Value != m.configMap.Data[k] {
			t.Errorf("topics Job %s = %+v, the service's is %q", k, e, m.configMap.Data[k])
		}
	}
	// The PostgreSQL DSN decides the application too: a service may register
	// a projection, whose dead-letter topic the Job creates, only with one.
	if e, want := envVar(c.Env, "INTERLOCK_POSTGRES_DSN_FILE"), m.configMap.Data["INTERLOCK_POSTGRES_DSN_FILE"]; (e == nil) != (want == "") || (e != nil && e.Value != want) {
		t.Errorf("topics Job INTERLOCK_POSTGRES_DSN_FILE = %+v, the service's is %q", e, want)
	}
	for _, k := range []string{"INTERLOCK_REDIS_PASSWORD_FILE", "INTERLOCK_REDIS_URL", "INTERLOCK_ROLES", "INTERLOCK_HTTP_ADDR",
		"INTERLOCK_GATEWAY_TOKEN_FILE", "INTERLOCK_GATEWAY_MAX_BODY", "INTERLOCK_GATEWAY_TIMEOUT"} {
		if envVar(c.Env, k) != nil {
			t.Errorf("topics Job gets %s, which only serve uses", k)
		}
	}
}

func checkTestHook(t *testing.T, m *manifests, httpPort int) {
	t.Helper()
	p := m.testPod
	if p == nil {
		t.Fatal("no helm test Pod")
	}
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test Pod hook %q, want test", p.Annotations["helm.sh/hook"])
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test Pod restartPolicy %q, want Never", p.Spec.RestartPolicy)
	}
	c := p.Spec.Containers[0]
	if c.Image == m.container().Image {
		t.Error("the test Pod runs the service image, which has no shell or HTTP client")
	}
	cmd := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	url := fmt.Sprintf("http://%s:%d/readyz", m.service.Name, m.service.Spec.Ports[0].Port)
	if !strings.Contains(cmd, url) {
		t.Errorf("test Pod runs %q, want a request to %s", cmd, url)
	}
}

func TestHelmDefaults(t *testing.T) {
	m := mustRender(t, valuesFile(t, "defaults-values.yaml"))
	if r := m.deployment.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("replicas %v, want 3", r)
	}
	if m.hpa != nil || m.scaledObject != nil || m.serviceMonitor != nil || m.triggerAuth != nil {
		t.Error("an optional resource is rendered by default")
	}
	if m.pdb == nil || m.pdb.Spec.MaxUnavailable == nil || m.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1", m.pdb)
	}
	cm := m.configMap.Data
	want := map[string]string{
		"INTERLOCK_NAME":               "interlock",
		"INTERLOCK_BROKERS":            "kafka-0.kafka:9092",
		"INTERLOCK_ROLES":              "dispatch,process,project",
		"INTERLOCK_HTTP_ADDR":          ":8080",
		"INTERLOCK_PARTITIONS":         "6",
		"INTERLOCK_REPLICATION_FACTOR": "3",
		"INTERLOCK_LOG_LEVEL":          "info",
	}
	for k, v := range want {
		if cm[k] != v {
			t.Errorf("ConfigMap %s = %q, want %q", k, cm[k], v)
		}
	}
	if strings.Contains(m.notes, "gateway") {
		t.Errorf("NOTES.txt speaks of a gateway without gateway.tokenSecret:\n%s", m.notes)
	}
	for k := range cm {
		if strings.HasPrefix(k, "INTERLOCK_TLS") || strings.HasPrefix(k, "INTERLOCK_SASL") || strings.HasPrefix(k, "INTERLOCK_REDIS") || strings.HasPrefix(k, "INTERLOCK_POSTGRES") ||
			strings.HasPrefix(k, "INTERLOCK_GATEWAY") {
			t.Errorf("ConfigMap sets %s by default", k)
		}
	}
	if v := m.deployment.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].EmptyDir == nil {
		t.Errorf("volumes %+v: want only the /tmp emptyDir", v)
	}
	if m.container().Image != "interlock:"+loadChart(t).Metadata.AppVersion {
		t.Errorf("image %q: want the appVersion tag", m.container().Image)
	}
}

func TestHelmSASLTLS(t *testing.T) {
	m := mustRender(t, valuesFile(t, "sasl-tls-values.yaml"))
	cm := m.configMap.Data
	for k, v := range map[string]string{
		"INTERLOCK_NAME":             "shop",
		"INTERLOCK_BROKERS":          "b-1.kafka.example.internal:9096,b-2.kafka.example.internal:9096,b-3.kafka.example.internal:9096",
		"INTERLOCK_TLS":              "true",
		"INTERLOCK_TLS_SERVER_NAME":  "kafka.example.internal",
		"INTERLOCK_SASL_MECHANISM":   "SCRAM-SHA-512",
		"INTERLOCK_SASL_USERNAME":    "shop",
		"INTERLOCK_REDIS_URL":        "rediss://redis.example.internal:6380/0",
		"INTERLOCK_PARTITIONS":       "12",
		"INTERLOCK_GATEWAY_MAX_BODY": "65536",
		"INTERLOCK_GATEWAY_TIMEOUT":  "10s",
		"GOMEMLIMIT":                 "1200MiB", // app.extraConfig
	} {
		if cm[k] != v {
			t.Errorf("ConfigMap %s = %q, want %q", k, cm[k], v)
		}
	}
	// Each secret file comes from the Secret and key the values name.
	ps, c := m.deployment.Spec.Template.Spec, m.container()
	for setting, want := range map[string][2]string{
		"INTERLOCK_TLS_CA_FILE":         {"kafka-ca", "ca.pem"},
		"INTERLOCK_TLS_CERT_FILE":       {"shop-kafka-client", "tls.crt"},
		"INTERLOCK_TLS_KEY_FILE":        {"shop-kafka-client", "tls.key"},
		"INTERLOCK_SASL_PASSWORD_FILE":  {"shop-kafka-sasl", "password"},
		"INTERLOCK_REDIS_PASSWORD_FILE": {"shop-redis", "redis-password"},
		"INTERLOCK_POSTGRES_DSN_FILE":   {"shop-postgres", "dsn"},
		"INTERLOCK_GATEWAY_TOKEN_FILE":  {"shop-gateway", "token"},
		"INTERLOCK_REDIS_TLS_CA_FILE":   {"shop-redis-ca", "ca.crt"}, // extraSecretFiles
	} {
		path := cm[setting]
		if path == "" {
			t.Errorf("ConfigMap lacks %s", setting)
			continue
		}
		if s, k := mountedSecretKey(ps, c, path); s != want[0] || k != want[1] {
			t.Errorf("%s=%s comes from Secret %q key %q, want %q key %q", setting, path, s, k, want[0], want[1])
		}
	}
	for _, v := range ps.Volumes {
		if v.Secret != nil {
			if v.Secret.Optional != nil && *v.Secret.Optional {
				t.Errorf("Secret volume %s is optional: a missing Secret would start a pod without credentials", v.Name)
			}
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0o040 {
				t.Errorf("Secret volume %s mode %v: want group-readable only (0440, the pods' fsGroup)", v.Name, v.Secret.DefaultMode)
			}
		}
	}
	for _, vm := range c.VolumeMounts {
		if vm.Name != "tmp" && !vm.ReadOnly {
			t.Errorf("volume mount %s is writable", vm.Name)
		}
	}
	// The topics Job mounts the Kafka credentials, the PostgreSQL DSN and
	// the extra files (a setting of app.extraConfig may be invalid without
	// its secret), not Redis's password or the gateway's token, which only
	// serve uses; every file its settings name is mounted.
	jc := m.job.Spec.Template.Spec.Containers[0]
	for _, k := range []string{"INTERLOCK_TLS_CA_FILE", "INTERLOCK_TLS_CERT_FILE", "INTERLOCK_SASL_PASSWORD_FILE", "INTERLOCK_SASL_USERNAME", "INTERLOCK_TLS", "GOMEMLIMIT"} {
		e := envVar(jc.Env, k)
		if e == nil || e.Value != cm[k] {
			t.Errorf("topics Job %s = %+v, want %q", k, e, cm[k])
		}
	}
	var jobSecrets []string
	for _, v := range m.job.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			jobSecrets = append(jobSecrets, v.Secret.SecretName)
		}
	}
	slices.Sort(jobSecrets)
	if want := []string{"kafka-ca", "shop-kafka-client", "shop-kafka-sasl", "shop-postgres", "shop-redis-ca"}; !slices.Equal(jobSecrets, want) {
		t.Errorf("topics Job mounts Secrets %q, want %q", jobSecrets, want)
	}
	for _, e := range jc.Env {
		if strings.HasSuffix(e.Name, "_FILE") {
			if s, _ := mountedSecretKey(m.job.Spec.Template.Spec, jc, e.Value); s == "" {
				t.Errorf("topics Job %s=%s: no Secret is mounted there", e.Name, e.Value)
			}
		}
	}

	if !strings.Contains(m.notes, "JSON gateway on /v1/ with the bearer token of Secret shop-gateway") {
		t.Errorf("NOTES.txt does not say where the gateway answers:\n%s", m.notes)
	}

	// OAUTHBEARER: no user; the token comes from the same Secret, as the
	// password does (the service reads it again at each authentication).
	oauthVals := with(with(valuesFile(t, "sasl-tls-values.yaml"), "kafka.sasl.mechanism", "OAUTHBEARER"), "kafka.sasl.username", "")
	o := mustRender(t, oauthVals)
	checkCommon(t, o)
	if cm := o.configMap.Data; cm["INTERLOCK_SASL_MECHANISM"] != "OAUTHBEARER" || cm["INTERLOCK_SASL_USERNAME"] != "" {
		t.Errorf("OAUTHBEARER: ConfigMap mechanism %q user %q", cm["INTERLOCK_SASL_MECHANISM"], cm["INTERLOCK_SASL_USERNAME"])
	}
	if s, k := mountedSecretKey(o.deployment.Spec.Template.Spec, o.container(), o.configMap.Data["INTERLOCK_SASL_PASSWORD_FILE"]); s != "shop-kafka-sasl" || k != "password" {
		t.Errorf("OAUTHBEARER: the token file comes from Secret %q key %q", s, k)
	}
	if l := quietLint(oauthVals); l.HighestSeverity >= support.WarningSev {
		t.Errorf("OAUTHBEARER: lint --strict: %v", l.Messages)
	}
}

func TestHelmHPA(t *testing.T) {
	m := mustRender(t, valuesFile(t, "hpa-values.yaml"))
	h := m.hpa
	if h == nil {
		t.Fatal("no HorizontalPodAutoscaler")
	}
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != m.deployment.Name || h.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want the Deployment %s", h.Spec.ScaleTargetRef, m.deployment.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 6 {
		t.Errorf("HPA bounds %v..%d, want 2..6", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	if m.deployment.Spec.Replicas != nil {
		t.Errorf("the Deployment sets replicas %d beside an autoscaler: each upgrade would reset the scale", *m.deployment.Spec.Replicas)
	}
	if m.scaledObject != nil {
		t.Error("a ScaledObject beside the HPA")
	}
}

func TestHelmKEDA(t *testing.T) {
	m := mustRender(t, valuesFile(t, "keda-values.yaml"))
	so := m.scaledObject
	if so == nil {
		t.Fatal("no ScaledObject")
	}
	if so.Spec.ScaleTargetRef.Name != m.deployment.Name {
		t.Errorf("ScaledObject targets %q, want %q", so.Spec.ScaleTargetRef.Name, m.deployment.Name)
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount != 6 || so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 1 {
		t.Errorf("ScaledObject bounds %v..%v, want 1..6", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
	}
	if m.deployment.Spec.Replicas != nil || m.hpa != nil {
		t.Error("the Deployment sets replicas, or an HPA is rendered, beside KEDA's own")
	}
	var topics []string
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "kafka" {
			t.Errorf("trigger type %q, want kafka", tr.Type)
		}
		md := tr.Metadata
		topics = append(topics, md["topic"])
		for k, v := range map[string]string{
			"bootstrapServers":   "kafka-0.kafka:9093,kafka-1.kafka:9093",
			"consumerGroup":      "bank.processors",
			"lagThreshold":       "50",
			"allowIdleConsumers": "false",
			"sasl":               "scram_sha256",
			"tls":                "enable",
		} {
			if md[k] != v {
				t.Errorf("trigger %s: %s = %q, want %q", md["topic"], k, md[k], v)
			}
		}
		if tr.AuthenticationRef == nil || m.triggerAuth == nil || tr.AuthenticationRef.Name != m.triggerAuth.Metadata.Name {
			t.Errorf("trigger %s does not use the chart's TriggerAuthentication: %+v", md["topic"], tr.AuthenticationRef)
		}
	}
	if want := []string{"bank.bank-account.commands", "bank.bank-transfer.commands"}; !slices.Equal(topics, want) {
		t.Errorf("KEDA watches %q, want the commands topics %q", topics, want)
	}
	ta := m.triggerAuth
	if ta == nil {
		t.Fatal("no TriggerAuthentication with SASL and TLS on")
	}
	refs := map[string]string{}
	for _, r := range ta.Spec.SecretTargetRef {
		refs[r.Parameter] = r.Name + "/" + r.Key
	}
	if want := map[string]string{"password": "bank-kafka-sasl/password", "ca": "kafka-ca/ca.crt"}; !maps.Equal(refs, want) {
		t.Errorf("TriggerAuthentication secrets %v, want %v", refs, want)
	}
	if len(ta.Spec.Env) != 1 || ta.Spec.Env[0].Parameter != "username" || ta.Spec.Env[0].ContainerName != m.container().Name ||
		m.configMap.Data[ta.Spec.Env[0].Name] != "bank" {
		t.Errorf("TriggerAuthentication username %+v: want INTERLOCK_SASL_USERNAME of container %s", ta.Spec.Env, m.container().Name)
	}

	// Without credentials to pass there is no TriggerAuthentication; with
	// one of the user's own, the chart's is not made.
	plain := with(with(with(valuesFile(t, "keda-values.yaml"), "kafka.sasl.mechanism", ""), "kafka.tls.enabled", false), "kafka.tls.caSecret.name", "")
	if p := mustRender(t, plain); p.triggerAuth != nil || p.scaledObject.Spec.Triggers[0].AuthenticationRef != nil {
		t.Error("a TriggerAuthentication without TLS or SASL")
	}
	if md := m.scaledObject.Spec.Triggers[0].Metadata; md["unsafeSsl"] != "" {
		t.Errorf("unsafeSsl %q without kafka.tls.insecureSkipVerify", md["unsafeSsl"])
	}
	insecure := mustRender(t, with(valuesFile(t, "keda-values.yaml"), "kafka.tls.insecureSkipVerify", true))
	if md := insecure.scaledObject.Spec.Triggers[0].Metadata; md["unsafeSsl"] != "true" {
		t.Errorf("kafka.tls.insecureSkipVerify: KEDA's unsafeSsl %q, want true (KEDA must skip the check the pods skip)", md["unsafeSsl"])
	}
	own := mustRender(t, with(valuesFile(t, "keda-values.yaml"), "keda.authenticationRef", "kafka-admin"))
	if own.triggerAuth != nil || own.scaledObject.Spec.Triggers[0].AuthenticationRef.Name != "kafka-admin" {
		t.Error("keda.authenticationRef is not used instead of the chart's TriggerAuthentication")
	}
}

func TestHelmServiceMonitor(t *testing.T) {
	m := mustRender(t, valuesFile(t, "servicemonitor-values.yaml"))
	sm := m.serviceMonitor
	if sm == nil {
		t.Fatal("no ServiceMonitor")
	}
	if sm.Metadata.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", sm.Metadata.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(m.service.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v)", sm.Spec.Selector, m.service.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Path != "/metrics" || ep.Interval != "15s" {
		t.Errorf("ServiceMonitor endpoint %+v: want /metrics every 15s", ep)
	}
	if !slices.ContainsFunc(m.service.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
		t.Errorf("ServiceMonitor scrapes port %q, which the Service does not name", ep.Port)
	}
}

// TestHelmReplicasBoundedByPartitions: each partition has one owner, so the
// chart refuses more pods than partitions, fixed or autoscaled, unless the
// pods own no partitions (a dispatch-only gateway).
func TestHelmReplicasBoundedByPartitions(t *testing.T) {
	base := valuesFile(t, "defaults-values.yaml")
	refused := []struct {
		name string
		vals map[string]any
		msg  string
	}{
		{"replicas", with(base, "replicaCount", 7), "replicaCount 7 is above app.partitions 6"},
		{"replicas, projections only", with(with(with(base, "app.roles", []any{"project"}), "app.partitions", 2), "replicaCount", 3), "above app.partitions 2"},
		{"hpa", with(with(base, "autoscaling.enabled", true), "autoscaling.maxReplicas", 8), "autoscaling.maxReplicas 8 is above app.partitions 6"},
		{"keda", with(valuesFile(t, "keda-values.yaml"), "keda.maxReplicaCount", 7), "keda.maxReplicaCount 7 is above app.partitions 6"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(t, tt.vals)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("render error %v, want one saying %q", err, tt.msg)
			}
		})
	}
	if m := mustRender(t, with(base, "replicaCount", 6)); *m.deployment.Spec.Replicas != 6 {
		t.Errorf("replicas %d, want 6 (= partitions)", *m.deployment.Spec.Replicas)
	}
	gateway := with(with(base, "app.roles", []any{"dispatch"}), "replicaCount", 10)
	if m := mustRender(t, gateway); *m.deployment.Spec.Replicas != 10 || m.configMap.Data["INTERLOCK_ROLES"] != "dispatch" {
		t.Errorf("a dispatch-only gateway: replicas %d roles %q, want 10 and dispatch", *m.deployment.Spec.Replicas, m.configMap.Data["INTERLOCK_ROLES"])
	}
}

// TestHelmLongNames: a long release or override name is cut so that every
// name stays within the API server's limits (63 characters for a Service,
// and for the Job, whose name is a label of its pods).
func TestHelmLongNames(t *testing.T) {
	long := strings.Repeat("a", 62) + "b" // 63 characters
	for _, vals := range []map[string]any{
		with(valuesFile(t, "sasl-tls-values.yaml"), "fullnameOverride", long),
		with(valuesFile(t, "keda-values.yaml"), "nameOverride", long),
	} {
		m := mustRender(t, vals)
		checkCommon(t, m)
		if n := len(m.job.Name); n > 63 {
			t.Errorf("topics Job name %q has %d characters", m.job.Name, n)
		}
		if !strings.Contains(m.notes, m.job.Name) {
			t.Errorf("NOTES.txt does not name the topics Job %s", m.job.Name)
		}
	}
}

// TestHelmRefusesBadValues: values.schema.json and the templates' checks
// refuse what would deploy a broken service.
func TestHelmRefusesBadValues(t *testing.T) {
	base := valuesFile(t, "defaults-values.yaml")
	tests := []struct {
		name string
		vals map[string]any
		msg  string
	}{
		{"no brokers", map[string]any{}, "kafka.brokers is required"},
		{"a misspelt key", with(base, "replicaCont", 2), "replicaCont"},
		{"a misspelt nested key", with(base, "kafka.sasl.passwordSecrets", map[string]any{"name": "x"}), "passwordSecrets"},
		{"an unknown mechanism", with(base, "kafka.sasl.mechanism", "SCRAM"), "mechanism"},
		{"a password as a value", with(base, "redis.password", "hunter2"), "password"},
		{"a broker without port", with(base, "kafka.brokers", []any{"kafka"}), "brokers"},
		{"SASL without a Secret", with(with(base, "kafka.sasl.mechanism", "PLAIN"), "kafka.sasl.username", "u"), "kafka.sasl.passwordSecret.name"},
		{"SCRAM without a user", with(with(base, "kafka.sasl.mechanism", "SCRAM-SHA-256"), "kafka.sasl.passwordSecret.name", "s"), "needs kafka.sasl.username"},
		{"a short grace period", with(base, "terminationGracePeriodSeconds", 20), "terminationGracePeriodSeconds"},
		{"HPA and KEDA", with(with(valuesFile(t, "keda-values.yaml"), "autoscaling.enabled", true), "autoscaling.maxReplicas", 6), "exclusive"},
		{"KEDA without aggregates", with(valuesFile(t, "keda-values.yaml"), "app.aggregates", []any{}), "app.aggregates"},
		{"KEDA on OAUTHBEARER", with(valuesFile(t, "keda-values.yaml"), "kafka.sasl.mechanism", "OAUTHBEARER"), "keda.authenticationRef"},
		{"a role typo", with(base, "app.roles", []any{"processor"}), "roles"},
		{"replication factor 0", with(base, "app.replicationFactor", 0), "replicationFactor"},
		{"replicas as a string", with(base, "replicaCount", "3"), "replicaCount"},
		{"a Redis URL of another scheme", with(base, "redis.url", "http://redis:6379"), "redis"},
		{"a drain longer than the grace period", with(base, "app.extraConfig", map[string]any{"INTERLOCK_DRAIN_TIMEOUT": "60s"}), "terminationGracePeriodSeconds 45 is under app.extraConfig.INTERLOCK_DRAIN_TIMEOUT 60s plus 5 s"},
		{"a drain in minutes longer than the grace period", with(with(base, "app.extraConfig", map[string]any{"INTERLOCK_DRAIN_TIMEOUT": "2m"}), "terminationGracePeriodSeconds", 120), "terminationGracePeriodSeconds 120 is under app.extraConfig.INTERLOCK_DRAIN_TIMEOUT 2m plus 5 s"},
		{"a drain the chart cannot read", with(base, "app.extraConfig", map[string]any{"INTERLOCK_DRAIN_TIMEOUT": "1m30s"}), "whole seconds or minutes"},
		{"the gateway token in extraSecretFiles", with(base, "extraSecretFiles", []any{map[string]any{"env": "INTERLOCK_GATEWAY_TOKEN_FILE", "secret": "s", "key": "k"}}), "gateway.tokenSecret"},
		{"a gateway setting in extraConfig", with(base, "app.extraConfig", map[string]any{"INTERLOCK_GATEWAY_TIMEOUT": "5s"}), "gateway.timeout"},
		{"the brokers in extraConfig", with(base, "app.extraConfig", map[string]any{"INTERLOCK_BROKERS": "other:9092"}), "app.extraConfig.INTERLOCK_BROKERS: the chart sets it already, from kafka.brokers"},
		{"the roles in extraConfig", with(base, "app.extraConfig", map[string]any{"INTERLOCK_ROLES": "process"}), "app.extraConfig.INTERLOCK_ROLES: the chart sets it already, from app.roles"},
		{"an extra secret file's variable in extraConfig", with(with(base, "app.extraConfig", map[string]any{"INTERLOCK_SCHEMA_REGISTRY_PASSWORD_FILE": "/x"}),
			"extraSecretFiles", []any{map[string]any{"env": "INTERLOCK_SCHEMA_REGISTRY_PASSWORD_FILE", "secret": "s", "key": "k"}}), "from extraSecretFiles"},
		{"the SASL password file in extraSecretFiles", with(with(with(base, "kafka.sasl.mechanism", "OAUTHBEARER"), "kafka.sasl.passwordSecret.name", "s"),
			"extraSecretFiles", []any{map[string]any{"env": "INTERLOCK_SASL_PASSWORD_FILE", "secret": "other", "key": "k"}}),
			"extraSecretFiles[0].env INTERLOCK_SASL_PASSWORD_FILE: the chart sets it already, from kafka.sasl.passwordSecret"},
		{"the Redis password file in extraSecretFiles", with(with(base, "redis.passwordSecret.name", "s"),
			"extraSecretFiles", []any{map[string]any{"env": "INTERLOCK_REDIS_PASSWORD_FILE", "secret": "other", "key": "k"}}),
			"extraSecretFiles[0].env INTERLOCK_REDIS_PASSWORD_FILE: the chart sets it already, from redis.passwordSecret"},
		{"one variable twice in extraSecretFiles", with(base, "extraSecretFiles", []any{
			map[string]any{"env": "INTERLOCK_SCHEMA_REGISTRY_TOKEN_FILE", "secret": "a", "key": "k"},
			map[string]any{"env": "INTERLOCK_SCHEMA_REGISTRY_TOKEN_FILE", "secret": "b", "key": "k"}}),
			"extraSecretFiles[1].env INTERLOCK_SCHEMA_REGISTRY_TOKEN_FILE: extraSecretFiles[0] sets it already"},
		{"the instance ID in extraConfig", with(base, "app.extraConfig", map[string]any{"INTERLOCK_INSTANCE_ID": "pod-a"}), "INTERLOCK_INSTANCE_ID: the chart sets it to the pod's name"},
		{"a gateway timeout that is not a duration", with(base, "gateway.timeout", "soon"), "timeout"},
		{"a gateway body limit of 0", with(base, "gateway.maxBodyBytes", 0), "maxBodyBytes"},
		{"an extra secret file not named *_FILE", with(base, "extraSecretFiles", []any{map[string]any{"env": "INTERLOCK_GATEWAY_TOKEN", "secret": "s", "key": "k"}}), "extraSecretFiles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(t, tt.vals)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("render error %v, want one mentioning %q", err, tt.msg)
			}
			if testing.Verbose() {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// TestHelmDrainTimeout: a drain set through app.extraConfig is passed on
// when the grace period covers it (5 s more, for the HTTP server's stop).
func TestHelmDrainTimeout(t *testing.T) {
	base := valuesFile(t, "defaults-values.yaml")
	for _, c := range []struct {
		drain string
		grace int
	}{{"40s", 45}, {"10s", 35}, {"2m", 125}} {
		m := mustRender(t, with(with(base, "app.extraConfig", map[string]any{"INTERLOCK_DRAIN_TIMEOUT": c.drain}), "terminationGracePeriodSeconds", c.grace))
		if got := m.configMap.Data["INTERLOCK_DRAIN_TIMEOUT"]; got != c.drain {
			t.Errorf("drain %s: INTERLOCK_DRAIN_TIMEOUT %q", c.drain, got)
		}
		if g := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != int64(c.grace) {
			t.Errorf("drain %s: terminationGracePeriodSeconds %v, want %d", c.drain, g, c.grace)
		}
	}
}

// TestHelmRefusesSecretsInExtraConfig: a secret setting of the service
// (each one of package service's configuration table) given as a value of
// app.extraConfig is refused: it would sit in the ConfigMap and the topics
// Job's environment for anyone who may read them. Its _FILE variable, a
// path, is accepted.
func TestHelmRefusesSecretsInExtraConfig(t *testing.T) {
	base := valuesFile(t, "defaults-values.yaml")
	if len(secretSettings) < 4 {
		t.Fatalf("found the secrets %q in service.Table(): the parser is broken", secretSettings)
	}
	for _, env := range secretSettings {
		t.Run(env, func(t *testing.T) {
			_, err := renderChart(t, with(base, "app.extraConfig", map[string]any{env: "s3cret"}))
			if want := "app.extraConfig." + env + " is a secret"; err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("render error %v, want one saying %q", err, want)
			}
			m := mustRender(t, with(base, "app.extraConfig", map[string]any{env + "_FILE": "/var/run/secrets/x/y"}))
			if m.configMap.Data[env+"_FILE"] != "/var/run/secrets/x/y" {
				t.Errorf("app.extraConfig.%s_FILE is not in the ConfigMap: %v", env, m.configMap.Data)
			}
		})
	}
}

// TestHelmValuesDocumented: every key of values.yaml is camelCase and has a
// comment on the line before it, and values.schema.json describes it.
func TestHelmValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^(\s*)([^\s#:-][^:]*):(\s|$)`)
	camel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	prev := ""
	keys := 0
	for n, line := range strings.Split(string(raw), "\n") {
		if m := key.FindStringSubmatch(line); m != nil {
			keys++
			if !camel.MatchString(m[2]) {
				t.Errorf("values.yaml:%d: key %q is not camelCase", n+1, m[2])
			}
			if !strings.HasPrefix(strings.TrimSpace(prev), "#") {
				t.Errorf("values.yaml:%d: key %q has no comment on the line before it", n+1, m[2])
			}
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if keys < 50 {
		t.Fatalf("found %d keys in values.yaml: the parser is broken", keys)
	}

	// Every value is described in the schema (additionalProperties: false
	// refuses keys it does not know, so they must all be there).
	ch := loadChart(t)
	var schema map[string]any
	if err := yaml.Unmarshal(ch.Schema, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, vals map[string]any, s map[string]any)
	walk = func(path string, vals map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			return // a free-form map (labels, resources, ...)
		}
		for k, v := range vals {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("values.schema.json has no %s%s", path, k)
				continue
			}
			if ps["description"] == nil {
				t.Errorf("values.schema.json: %s%s has no description", path, k)
			}
			if sub, ok := v.(map[string]any); ok {
				walk(path+k+".", sub, ps)
			}
		}
	}
	walk("", ch.Values, schema)
}

// TestHelmHelpersPrefixed: every named template is the chart's
// ("interlock."), so it cannot clash with a parent chart's.
func TestHelmHelpersPrefixed(t *testing.T) {
	define := regexp.MustCompile(`define\s+"([^"]+)"`)
	ch := loadChart(t)
	n := 0
	for _, tpl := range ch.Templates {
		for _, m := range define.FindAllStringSubmatch(string(tpl.Data), -1) {
			n++
			if !strings.HasPrefix(m[1], "interlock.") {
				t.Errorf("%s defines %q: want the prefix interlock.", tpl.Name, m[1])
			}
		}
	}
	if n == 0 {
		t.Fatal("no named templates found")
	}
}
