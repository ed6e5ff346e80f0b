package deploytest

import (
	"io"
	"log"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// TestHelmLintStrict runs `helm lint --strict` on the chart for each value
// set: Chart.yaml, values.schema.json, every template rendered and its YAML
// checked, deprecated APIs; strict fails on warnings as well as errors.
func TestHelmLintStrict(t *testing.T) {
	for _, name := range valueSets {
		t.Run(name, func(t *testing.T) {
			linter := quietLint(valuesFile(t, name))
			for _, msg := range linter.Messages {
				t.Logf("lint: %s", msg)
			}
			if linter.HighestSeverity >= support.WarningSev {
				for _, msg := range linter.Messages {
					if msg.Severity >= support.WarningSev {
						t.Errorf("lint --strict: %s", msg)
					}
				}
			}
		})
	}
}

// TestHelmLintCatchesErrors: the lint above is not blind: values the schema
// refuses make it fail. (Lint reports a template's `fail` only as INFO: the
// render tests check those.)
func TestHelmLintCatchesErrors(t *testing.T) {
	vals := map[string]any{"replicaCount": 0, "kafka": map[string]any{"brokers": []any{"k:9092"}}}
	linter := quietLint(vals)
	if linter.HighestSeverity < support.ErrorSev {
		t.Errorf("lint of replicaCount 0: highest severity %d, want an error; messages %v", linter.HighestSeverity, linter.Messages)
	}
}

// quietLint lints the chart with the given values; Helm's engine logs every
// `fail` it meets in lint mode through the standard logger, silenced here.
func quietLint(vals map[string]any) support.Linter {
	w := log.Writer()
	log.SetOutput(io.Discard)
	defer log.SetOutput(w)
	return lint.All(chartDir, vals, releaseNS, false)
}
