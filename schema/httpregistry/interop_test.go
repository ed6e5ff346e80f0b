package httpregistry

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/interlock-go/interlock/schema"
)

type Address struct {
	Street string `avro:"street"`
	Zip    *int32 `avro:"zip"`
}

type AccountOpened struct {
	Owner    string            `avro:"owner"`
	Deposit  int64             `avro:"deposit"`
	Branch   int32             `avro:"branch"`
	Rate     float64           `avro:"rate"`
	Ratio    float32           `avro:"ratio"`
	Active   bool              `avro:"active"`
	Memo     *string           `avro:"memo"`
	NoMemo   *string           `avro:"no_memo"`
	Raw      []byte            `avro:"raw"`
	Hash     [4]byte           `avro:"hash"`
	Tags     []string          `avro:"tags"`
	Limits   map[string]int64  `avro:"limits"`
	Home     Address           `avro:"home"`
	Previous []Address         `avro:"previous"`
	At       time.Time         `avro:"at"`
	Took     time.Duration     `avro:"took"`
	Extra    map[string]string `avro:"extra"`
}

// An event written by Interlock is read by another Avro implementation
// (goavro, not hamba/avro), which is given nothing but the record and the
// registry's URL: it takes the schema ID from the frame and fetches the
// schema over the registry's REST API, as Kafka Connect, Flink or ksqlDB
// would.
func TestInteropGoavro(t *testing.T) {
	ctx := context.Background()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	reg, err := New(URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Avro(schema.AvroRegistry(reg)).For(reflect.TypeFor[AccountOpened]())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Register(ctx, s, "bank.account.events"); err != nil {
		t.Fatal(err)
	}
	memo, zip := "hello", int32(75001)
	at := time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.UTC)
	ev := AccountOpened{
		Owner: "Ann", Deposit: -1 << 40, Branch: 7, Rate: 0.25, Ratio: 1.5, Active: true,
		Memo: &memo, Raw: []byte{0, 1, 2}, Hash: [4]byte{9, 8, 7, 6},
		Tags: []string{"a", "b"}, Limits: map[string]int64{"day": 500},
		Home: Address{Street: "Main", Zip: &zip}, Previous: []Address{{Street: "Old"}},
		At: at, Took: 1500 * time.Millisecond,
	}
	rec, err := s.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}

	// The reader's side: the frame, then the registry's REST API.
	if rec[0] != 0 {
		t.Fatalf("magic byte %d", rec[0])
	}
	id := binary.BigEndian.Uint32(rec[1:5])
	resp, err := http.Get(fmt.Sprintf("%s/schemas/ids/%d", fake.URL(), id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Schema string `json:"schema"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET schema %d: %d, %v", id, resp.StatusCode, err)
	}
	codec, err := goavro.NewCodec(body.Schema)
	if err != nil {
		t.Fatalf("goavro cannot parse the registered schema %s: %v", body.Schema, err)
	}
	native, rest, err := codec.NativeFromBinary(rec[5:])
	if err != nil || len(rest) != 0 {
		t.Fatalf("goavro: %v, %d bytes left", err, len(rest))
	}
	got := native.(map[string]any)

	want := map[string]any{
		"owner": "Ann", "deposit": int64(-1 << 40), "branch": int32(7), "rate": 0.25, "ratio": float32(1.5), "active": true,
		"memo": map[string]any{"string": "hello"}, "no_memo": nil, "raw": []byte{0, 1, 2}, "hash": []byte{9, 8, 7, 6},
		"tags": []any{"a", "b"}, "limits": map[string]any{"day": int64(500)},
		"home":     map[string]any{"street": "Main", "zip": map[string]any{"int": int32(75001)}},
		"previous": []any{map[string]any{"street": "Old", "zip": nil}},
		"at":       at.Truncate(time.Microsecond),
		"took":     1500 * time.Millisecond,
		"extra":    map[string]any{},
	}
	for k, w := range want {
		g := got[k]
		if tg, ok := g.(time.Time); ok {
			if !tg.Equal(w.(time.Time)) {
				t.Errorf("%s = %v, want %v", k, g, w)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v, want %#v", k, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("goavro decoded %d fields, want %d: %v", len(got), len(want), got)
	}

	// And the other way: what goavro writes with that schema, Interlock
	// reads.
	back, err := codec.BinaryFromNative(append([]byte(nil), rec[:5]...), native)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Decode(back)
	if err != nil {
		t.Fatal(err)
	}
	ev.At = ev.At.Truncate(time.Microsecond)
	ev.Extra = map[string]string{}
	if g := *v.(*AccountOpened); !reflect.DeepEqual(g, ev) {
		t.Errorf("Interlock read goavro's record as\n%+v\nwant\n%+v", g, ev)
	}
}
