package deploy

import (
	"bufio"
	"go/parser"
	"go/token"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/interlock-go/interlock/service"
)

// root is the repository's root, from this folder.
var root = filepath.Join("..", "..", "..")

// chartDir is the chart the bank deploys with.
var chartDir = filepath.Join(root, "deploy", "helm", "interlock")

// The release of the chapter's helm install.
const (
	release   = "bank"
	namespace = "bank"
)

func bankValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile("bank-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// render renders the chart as `helm install --dry-run` would: the values
// merged into the chart's defaults and checked against its schema, every
// template rendered in strict mode.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

// manifests is what one render makes, decoded strictly: a misspelt field
// fails.
type manifests struct {
	configMap  *corev1.ConfigMap
	deployment *appsv1.Deployment
	job        *batchv1.Job
	kinds      []string
	text       string
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

func decode(t *testing.T, files map[string]string) manifests {
	t.Helper()
	var m manifests
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if filepath.Base(name) == "NOTES.txt" || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		m.text += files[name]
		for _, doc := range docSep.Split(files[name], -1) {
			var head struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var target any
			switch head.Kind {
			case "":
				continue
			case "ConfigMap":
				m.configMap = &corev1.ConfigMap{}
				target = m.configMap
			case "Deployment":
				m.deployment = &appsv1.Deployment{}
				target = m.deployment
			case "Job":
				m.job = &batchv1.Job{}
				target = m.job
			}
			m.kinds = append(m.kinds, head.Kind)
			if target != nil {
				if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	}
	if m.configMap == nil || m.deployment == nil || m.job == nil {
		t.Fatalf("the release lacks a ConfigMap, a Deployment or the topics Job: %v", m.kinds)
	}
	return m
}

// TestBankValuesLint: `helm lint --strict` passes with the bank's values.
func TestBankValuesLint(t *testing.T) {
	w := log.Writer()
	log.SetOutput(io.Discard) // Helm's engine logs what lint renders
	linter := lint.All(chartDir, bankValues(t), namespace, false)
	log.SetOutput(w)
	for _, msg := range linter.Messages {
		if msg.Severity >= support.WarningSev {
			t.Errorf("lint --strict: %s", msg)
		}
	}
}

// TestBankRelease: what `helm install bank` makes with the bank's values.
func TestBankRelease(t *testing.T) {
	files, err := render(t, bankValues(t))
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, files)

	// Three pods of the bank's image, each running serve, configured from
	// the ConfigMap, ready only once their partitions are restored.
	d := m.deployment
	if d.Name != "bank-interlock" {
		t.Errorf("the Deployment is %s, want bank-interlock (the chapter's kubectl commands name it)", d.Name)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example.com/bank:1.0.0" || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("the container runs %s %v, want registry.example.com/bank:1.0.0 serve", c.Image, c.Args)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != m.configMap.Name {
		t.Errorf("the container's settings do not come from the ConfigMap %s: %+v", m.configMap.Name, c.EnvFrom)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz", p)
	}

	// The settings: the application, Kafka, Redis, and the secrets as
	// paths of mounted files.
	for k, want := range map[string]string{
		"INTERLOCK_NAME":                "bank",
		"INTERLOCK_PARTITIONS":          "12",
		"INTERLOCK_BROKERS":             "kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9092",
		"INTERLOCK_ROLES":               "dispatch,process,project",
		"INTERLOCK_REDIS_URL":           "redis://redis.bank:6379/0",
		"INTERLOCK_REDIS_PASSWORD_FILE": "/var/run/secrets/interlock/redis/password",
		"INTERLOCK_POSTGRES_DSN_FILE":   "/var/run/secrets/interlock/postgres/dsn",
		"INTERLOCK_GATEWAY_TOKEN_FILE":  "/var/run/secrets/interlock/gateway/token",
		"INTERLOCK_HTTP_ADDR":           ":8080",
	} {
		if got := m.configMap.Data[k]; got != want {
			t.Errorf("ConfigMap %s = %q, want %q", k, got, want)
		}
	}
	// Every setting is one the bank's binary reads (package service).
	for k := range m.configMap.Data {
		if !strings.Contains(service.Table(), "`"+k+"`") {
			t.Errorf("ConfigMap %s is not a setting of the service", k)
		}
	}
	// The Secrets are mounted, never copied into the release.
	mounted := map[string]bool{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			mounted[v.Secret.SecretName] = true
		}
	}
	for _, s := range []string{"bank-redis", "bank-postgres", "bank-gateway"} {
		if !mounted[s] {
			t.Errorf("the Secret %s is not mounted (volumes %v)", s, mounted)
		}
	}
	if slices.Contains(m.kinds, "Secret") {
		t.Error("the release makes a Secret")
	}

	// Before the pods start or change, a Job creates the topics with the
	// same binary.
	j := m.job
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Errorf("the topics Job's hook is %q, want pre-install,pre-upgrade", hook)
	}
	jc := j.Spec.Template.Spec.Containers[0]
	if jc.Image != c.Image || !slices.Equal(jc.Args, []string{"topics", "create"}) {
		t.Errorf("the topics Job runs %s %v, want %s topics create", jc.Image, jc.Args, c.Image)
	}
}

// TestBankReplicasBoundedByPartitions: the chart refuses more pods than
// partitions; the extra pods would own nothing.
func TestBankReplicasBoundedByPartitions(t *testing.T) {
	vals := bankValues(t)
	vals["replicaCount"] = 13
	_, err := render(t, vals)
	if err == nil || !strings.Contains(err.Error(), "replicaCount 13 is above app.partitions 12") {
		t.Errorf("13 replicas on 12 partitions: %v, want the chart to refuse", err)
	}
}

// TestDockerfileBuildsTheBank: the Dockerfile builds chapter 6's command,
// and the image's entry point is the binary it builds.
func TestDockerfileBuildsTheBank(t *testing.T) {
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var build, entry string
	for s := bufio.NewScanner(f); s.Scan(); {
		line := strings.TrimSpace(s.Text())
		if m := regexp.MustCompile(`go build .* -o (\S+) (\S+)$`).FindStringSubmatch(line); m != nil {
			build = m[2]
		}
		if strings.HasPrefix(line, "ENTRYPOINT") {
			entry = line
		}
	}
	if build != "./docs/tutorial/06-service/cmd/bank" {
		t.Fatalf("the Dockerfile builds %q, want ./docs/tutorial/06-service/cmd/bank", build)
	}
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, build, "main.go"), nil, parser.PackageClauseOnly)
	if err != nil || file.Name.Name != "main" {
		t.Fatalf("%s is not a command: %v", build, err)
	}
	if entry != `ENTRYPOINT ["/bank"]` {
		t.Errorf("entry point %q, want the bank binary", entry)
	}
}
