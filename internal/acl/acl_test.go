package acl

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestDenied(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("producing: %w", kerr.TopicAuthorizationFailed), true},
		{kerr.GroupAuthorizationFailed, true},
		{fmt.Errorf("init: %w", kerr.TransactionalIDAuthorizationFailed), true},
		{kerr.ClusterAuthorizationFailed, true},
		{kerr.ProducerFenced, false},
		{kerr.SaslAuthenticationFailed, false},
		{context.DeadlineExceeded, false},
		{nil, false},
	} {
		if got := Denied(c.err); got != c.want {
			t.Errorf("Denied(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	err := FetchError("app.processors", "", kerr.GroupAuthorizationFailed)
	if !errors.Is(err, kerr.GroupAuthorizationFailed) || err.Error() != "group app.processors: "+kerr.GroupAuthorizationFailed.Error() {
		t.Errorf("a join's error: %v", err)
	}
	if err := FetchError("g", "app.x.events", kerr.TopicAuthorizationFailed); err.Error() != "topic app.x.events: "+kerr.TopicAuthorizationFailed.Error() {
		t.Errorf("a topic's error: %v", err)
	}
}

func TestTransactionalID(t *testing.T) {
	err := TransactionalID("app.processor.a", fmt.Errorf("init: %w", kerr.TransactionalIDAuthorizationFailed))
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || err.Error() != "transactional ID app.processor.a: init: "+kerr.TransactionalIDAuthorizationFailed.Error() {
		t.Errorf("the transactional ID's refusal: %v", err)
	}
	topic := fmt.Errorf("topic app.x.events: %w", kerr.TopicAuthorizationFailed)
	if err := TransactionalID("app.processor.a", topic); err != topic {
		t.Errorf("a topic's refusal became %v", err)
	}
}
