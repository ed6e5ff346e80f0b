package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeploymentGuide keeps docs/deployment.md in step with the chart and
// the repository: every top-level value of the chart is explained, the
// production settings it must state are there, and its relative links lead
// to files that exist.
func TestDeploymentGuide(t *testing.T) {
	file := filepath.Join(repoRoot, "docs", "deployment.md")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)

	for k := range loadChart(t).Values {
		if !strings.Contains(doc, "`"+k) {
			t.Errorf("the guide does not mention the value %s", k)
		}
	}
	for _, want := range []string{
		"min.insync.replicas=2", "replication factor 3", "retention.ms=-1", "never compacted",
		"add.partitions.to.txn.retry.backoff.ms=1",
		"<name>.processors", "<name>.projection.<p>", "<name>.processor.<instance>",
		"<name>.projection.<p>.<instance>", "<name>._schemas",
		"maxmemory-policy noeviction", "helm test", "topics create",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the guide does not say %q", want)
		}
	}

	link := regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`)
	for _, m := range link.FindAllStringSubmatch(doc, -1) {
		target := m[1]
		if strings.Contains(target, "://") {
			continue
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(file), target)); err != nil {
			t.Errorf("link %s: %v", target, err)
		}
	}
}
