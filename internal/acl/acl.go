// Package acl tells Kafka's authorization failures from other errors. They
// do not pass with retries, so the processor and the projectors stop on
// them and say what was refused, instead of retrying forever while looking
// healthy.
package acl

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Denied reports whether err is Kafka refusing this principal an operation
// on a topic, a group, a transactional ID or the cluster.
func Denied(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// FetchError names what a consumer's error is about: its topic, or its
// group when it has none (joining the group failed), since Kafka's
// message names neither.
func FetchError(group, topic string, err error) error {
	if topic == "" {
		return fmt.Errorf("group %s: %w", group, err)
	}
	return fmt.Errorf("topic %s: %w", topic, err)
}

// TransactionalID names the transactional ID in err when err is Kafka
// refusing it; any other refusal (a topic's, the cluster's) names its own
// resource or none, and is returned as it is.
func TransactionalID(id string, err error) error {
	if errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		return fmt.Errorf("transactional ID %s: %w", id, err)
	}
	return err
}
