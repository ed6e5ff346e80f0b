package producer

import (
	"encoding/json"
	"fmt"
)

// Status is a command's outcome as its reply reports it.
type Status string

const (
	// Applied: the handler succeeded and its events are committed.
	Applied Status = "applied"
	// Rejected: a domain rejection (handler error, version conflict, bad
	// command); no event was written. Retrying the same command is useless.
	Rejected Status = "rejected"
	// Failed: the command could not be handled for a reason that is not the
	// domain's (a panicking handler, an event that cannot be encoded); no
	// event was written.
	Failed Status = "failed"
)

// Position is where one event was written.
type Position struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// Reply is what a processor answers to a command that asked for a reply. It
// travels as JSON on the replies topic, keyed by command ID.
type Reply struct {
	Status    Status          `json:"status"`
	CommandID string          `json:"command_id"`
	Version   int64           `json:"version"`
	Positions []Position      `json:"positions,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	// Code names the declared error (aggregate.Errors) a rejection
	// matched.
	Code string `json:"code,omitempty"`
	// Expected and Actual are set on a version conflict.
	Conflict *Conflict `json:"conflict,omitempty"`
}

// Conflict is the detail of an expected-version conflict.
type Conflict struct {
	Expected int64 `json:"expected"`
	Actual   int64 `json:"actual"`
}

// EncodeReply encodes a reply for the replies topic.
func EncodeReply(r *Reply) []byte {
	b, err := json.Marshal(r)
	if err != nil { // only a Result that is not valid JSON can fail
		b, _ = json.Marshal(&Reply{Status: Failed, CommandID: r.CommandID, Reason: "cannot encode reply: " + err.Error()})
	}
	return b
}

// DecodeReply decodes a reply record's value.
func DecodeReply(b []byte) (*Reply, error) {
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("undecodable reply: %w", err)
	}
	return &r, nil
}
