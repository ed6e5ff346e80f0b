package producer

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// reserved reports whether key is one of Interlock's own header names.
func reserved(key string) bool {
	return len(key) >= len("interlock-") && strings.EqualFold(key[:len("interlock-")], "interlock-")
}

// AppendMetadata appends md to headers, one header per key. A key that
// starts with "interlock-" is refused: those name the envelope.
func AppendMetadata(headers []kgo.RecordHeader, md map[string]string) ([]kgo.RecordHeader, error) {
	for k, v := range md {
		if k == "" {
			return headers, fmt.Errorf("metadata has an empty key")
		}
		if reserved(k) {
			return headers, fmt.Errorf("metadata key %q is reserved for Interlock's headers", k)
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return headers, nil
}

// Metadata returns the headers of r that are not Interlock's envelope: the
// metadata a command carries, and that its events inherit. Nil when there
// are none.
func Metadata(r *kgo.Record) map[string]string {
	var md map[string]string
	for _, h := range r.Headers {
		if reserved(h.Key) {
			continue
		}
		if md == nil {
			md = map[string]string{}
		}
		md[h.Key] = string(h.Value)
	}
	return md
}
