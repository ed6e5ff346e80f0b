package interlock_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/internal/kafkatest"
	"github.com/interlock-go/interlock/producer"
	"github.com/interlock-go/interlock/schema/httpregistry"
)

// TestInteropExternalRegistry (issue 7): an application whose schemas live
// in a Confluent-compatible registry (WithSchemaRegistry) writes commands
// and events that another Avro implementation (goavro, not hamba/avro)
// decodes with nothing but the records in Kafka and the registry's REST
// API, as Kafka Connect, Flink or ksqlDB would: the frame is read by
// franz-go's own Confluent header code, the writer schema fetched by the
// frame's ID, and each schema is the latest version of its subject,
// "<topic>-<record full name>".
func TestInteropExternalRegistry(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	fake := srfake.New()
	t.Cleanup(fake.Close)
	reg, err := httpregistry.New(httpregistry.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	app := startApp(t, brokers, name, interlock.WithSchemaRegistry(reg))
	id := open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 42)); err != nil {
		t.Fatal(err)
	}

	// get decodes the JSON answer of the registry to GET path.
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(fake.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	// decode reads r as an independent consumer: frame, registry, goavro.
	decode := func(r *kgo.Record) (fullName string, native map[string]any) {
		t.Helper()
		var h sr.ConfluentHeader
		schemaID, body, err := h.DecodeID(r.Value)
		if err != nil {
			t.Fatalf("%s record at offset %d: not in the Confluent wire format: %v", r.Topic, r.Offset, err)
		}
		var byID struct {
			Schema string `json:"schema"`
		}
		get(fmt.Sprintf("/schemas/ids/%d", schemaID), &byID)
		codec, err := goavro.NewCodec(byID.Schema)
		if err != nil {
			t.Fatalf("goavro cannot parse schema %d %s: %v", schemaID, byID.Schema, err)
		}
		v, rest, err := codec.NativeFromBinary(body)
		if err != nil || len(rest) != 0 {
			t.Fatalf("goavro decoding %s with schema %d: %v, %d bytes left", r.Topic, schemaID, err, len(rest))
		}
		var named struct{ Name, Namespace string }
		if err := json.Unmarshal([]byte(byID.Schema), &named); err != nil {
			t.Fatal(err)
		}
		fullName = named.Name
		if named.Namespace != "" && !strings.Contains(named.Name, ".") {
			fullName = named.Namespace + "." + named.Name
		}
		var latest struct {
			ID int `json:"id"`
		}
		subject := r.Topic + "-" + fullName
		get("/subjects/"+url.PathEscape(subject)+"/versions/latest", &latest)
		if latest.ID != schemaID {
			t.Errorf("subject %s: latest ID %d, the record's %d", subject, latest.ID, schemaID)
		}
		return fullName, v.(map[string]any)
	}

	type decoded struct {
		typ, fullName string
		fields        string
	}
	read := func(topic string) []decoded {
		var out []decoded
		for _, r := range eventsOf(t, brokers, topic, id) {
			full, v := decode(r)
			b, _ := json.Marshal(v)
			out = append(out, decoded{header(r, producer.HeaderType), full, string(b)})
		}
		return out
	}
	const ns = "github.com.interlock_go.interlock.examples.bank."
	want := map[string][]decoded{
		name + ".bank-account.commands": {
			{"OpenAccount", ns + "OpenAccount", `{"owner":"ada"}`},
			{"DepositMoney", ns + "DepositMoney", `{"amount":42}`},
		},
		name + ".bank-account.events": {
			{"AccountOpened", ns + "AccountOpened", `{"owner":"ada"}`},
			{"MoneyDeposited", ns + "MoneyDeposited", `{"amount":42}`},
		},
	}
	for topic, w := range want {
		got := read(topic)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s decoded by goavro:\n%v\nwant\n%v", topic, got, w)
		}
	}
}

// TestInteropBuiltinRegistry (issue 7): with the built-in registry, a
// reader that knows only the topic <name>._schemas (records "id/<ID>" →
// {"schema": text}, the first of a key winning) decodes the events with
// another Avro implementation (goavro).
func TestInteropBuiltinRegistry(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	name := kafkatest.Name(t)
	ctx := ctxT(t)
	app := startApp(t, brokers, name)
	id := open(t, ctx, app)
	if _, err := interlock.Dispatch(ctx, app, deposit(id, 42)); err != nil {
		t.Fatal(err)
	}

	schemas := map[int]string{}
	for _, r := range kafkatest.ReadAll(t, brokers, name+"._schemas") {
		var sid int
		if _, err := fmt.Sscanf(string(r.Key), "id/%d", &sid); err != nil {
			continue
		}
		var v struct {
			Schema string `json:"schema"`
		}
		if _, seen := schemas[sid]; !seen && json.Unmarshal(r.Value, &v) == nil {
			schemas[sid] = v.Schema
		}
	}
	var got []string
	for _, r := range eventsOf(t, brokers, name+".bank-account.events", id) {
		var h sr.ConfluentHeader
		sid, body, err := h.DecodeID(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		text, ok := schemas[sid]
		if !ok {
			t.Fatalf("schema ID %d of %s is not in %s._schemas", sid, header(r, producer.HeaderType), name)
		}
		codec, err := goavro.NewCodec(text)
		if err != nil {
			t.Fatal(err)
		}
		v, rest, err := codec.NativeFromBinary(body)
		if err != nil || len(rest) != 0 {
			t.Fatalf("goavro: %v, %d bytes left", err, len(rest))
		}
		b, _ := json.Marshal(v)
		got = append(got, header(r, producer.HeaderType)+string(b))
	}
	if want := []string{`AccountOpened{"owner":"ada"}`, `MoneyDeposited{"amount":42}`}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("goavro decoded %q, want %q", got, want)
	}
}
