package consumer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
)

// A snapshot's bytes hold the encoded state and the aggregate's recent
// commands (for idempotency):
//
//	0x01, uvarint len(state), state, uvarint n,
//	n × (16-byte command ID, varint version, varint offset, uvarint events,
//	     uvarint len(result), result)
const frameV1 = 0x01

func encodeFrame(state []byte, recent []aggregate.Applied) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(state)+len(recent)*48)
	b = append(b, frameV1)
	b = binary.AppendUvarint(b, uint64(len(state)))
	b = append(b, state...)
	b = binary.AppendUvarint(b, uint64(len(recent)))
	for _, r := range recent {
		b = append(b, r.CommandID[:]...)
		b = binary.AppendVarint(b, r.Version)
		b = binary.AppendVarint(b, r.Offset)
		b = binary.AppendUvarint(b, uint64(r.Events))
		b = binary.AppendUvarint(b, uint64(len(r.Result)))
		b = append(b, r.Result...)
	}
	return b
}

var errFrame = errors.New("corrupt snapshot frame")

func decodeFrame(b []byte) (state []byte, recent []aggregate.Applied, err error) {
	if len(b) == 0 || b[0] != frameV1 {
		return nil, nil, fmt.Errorf("%w: unknown format", errFrame)
	}
	b = b[1:]
	bytesOf := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		out := b[k : k+int(n)]
		b = b[k+int(n):]
		return out, true
	}
	uvarint := func() (uint64, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return n, true
	}
	varint := func() (int64, bool) {
		n, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return n, true
	}
	state, ok := bytesOf()
	if !ok {
		return nil, nil, fmt.Errorf("%w: state", errFrame)
	}
	n, ok := uvarint()
	if !ok || n > uint64(len(b))/16 {
		return nil, nil, fmt.Errorf("%w: command count", errFrame)
	}
	recent = make([]aggregate.Applied, 0, n)
	for range n {
		var r aggregate.Applied
		if len(b) < 16 {
			return nil, nil, fmt.Errorf("%w: command ID", errFrame)
		}
		r.CommandID = ulid.ULID(b[:16])
		b = b[16:]
		var ok1, ok2, ok3 bool
		var events uint64
		r.Version, ok1 = varint()
		r.Offset, ok2 = varint()
		events, ok3 = uvarint()
		res, ok4 := bytesOf()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, nil, fmt.Errorf("%w: command %s", errFrame, r.CommandID)
		}
		r.Events = int(events)
		if len(res) > 0 {
			r.Result = res
		}
		recent = append(recent, r)
	}
	if len(b) != 0 {
		return nil, nil, fmt.Errorf("%w: %d trailing bytes", errFrame, len(b))
	}
	return state, recent, nil
}
