package deploytest

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestHelmTemplate prints the chart rendered with one of its value sets,
// as `helm template` would, for a developer without the helm binary:
//
//	INTERLOCK_HELM_TEMPLATE=keda-values.yaml go test -run TestHelmTemplate -v ./internal/deploytest
//
// Without the variable it is skipped.
func TestHelmTemplate(t *testing.T) {
	name := os.Getenv("INTERLOCK_HELM_TEMPLATE")
	if name == "" {
		t.Skip("set INTERLOCK_HELM_TEMPLATE to a file of deploy/helm/interlock/ci to print the chart rendered with it")
	}
	files, err := renderChart(t, valuesFile(t, name))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range slices.Sorted(maps.Keys(files)) {
		if strings.TrimSpace(files[f]) == "" || strings.HasSuffix(f, ".tpl") {
			continue
		}
		b.WriteString("---\n# Source: " + f + "\n" + strings.TrimSpace(files[f]) + "\n")
	}
	os.Stdout.WriteString(b.String())
}
