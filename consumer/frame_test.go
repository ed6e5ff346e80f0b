package consumer

import (
	"errors"
	"reflect"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/interlock-go/interlock/aggregate"
)

func TestFrameRoundTrip(t *testing.T) {
	recent := []aggregate.Applied{
		{CommandID: ulid.Make(), Version: 3, Offset: 120, Events: 2, Result: []byte(`{"balance":5}`)},
		{CommandID: ulid.Make(), Version: 4, Offset: 130, Events: 1},
	}
	for _, tt := range []struct {
		state  []byte
		recent []aggregate.Applied
	}{{[]byte("state"), recent}, {[]byte{}, nil}} {
		state, got, err := decodeFrame(encodeFrame(tt.state, tt.recent))
		if err != nil || string(state) != string(tt.state) || len(got) != len(tt.recent) || (len(got) > 0 && !reflect.DeepEqual(got, tt.recent)) {
			t.Fatalf("round trip: %q %+v %v", state, got, err)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(encodeFrame([]byte("state"), []aggregate.Applied{{CommandID: ulid.Make(), Version: 1, Events: 1, Result: []byte("1")}}))
	f.Add([]byte{1, 200, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := decodeFrame(b); err != nil && !errors.Is(err, errFrame) {
			t.Fatalf("error %v does not wrap errFrame", err)
		}
	})
}

func TestAppendRecentKeepsTheWindow(t *testing.T) {
	var recent []aggregate.Applied
	for v := range int64(5) {
		recent = appendRecent(recent, aggregate.Applied{Version: v + 1}, 3)
	}
	if len(recent) != 3 || recent[0].Version != 3 || recent[2].Version != 5 {
		t.Fatalf("window of 3 after 5: %+v", recent)
	}
}
