// Package prune deletes the Kafka topics a run or a test made, by name:
// the bench's at its end, a passing test's on the shared broker.
package prune

import (
	"context"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Topics deletes the topics of the cluster whose names match, and returns
// how many it asked to delete.
func Topics(ctx context.Context, adm *kadm.Client, match func(topic string) bool) (int, error) {
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return 0, err
	}
	var doomed []string
	for _, t := range all.Names() {
		if match(t) {
			doomed = append(doomed, t)
		}
	}
	if len(doomed) == 0 {
		return 0, nil
	}
	resps, err := adm.DeleteTopics(ctx, doomed...)
	if err == nil {
		err = resps.Error()
	}
	return len(doomed), err
}
