package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/interlock-go/interlock/internal/kafkatest"
)

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--burst", "30"}
	if kafkatest.Real() {
		args = append(args, "--brokers", strings.Join(kafkatest.Brokers(t), ","))
	}
	var out bytes.Buffer
	if err := demo(ctx, &out, args); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"rejected  withdraw 500 from alice                command rejected: insufficient funds",
		"30 applied in",
		"versions 2..31, each exactly once",
		"alice  95",
		"bob    30",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDemoEventsAndAggregate: run against a Kafka, the demo prints the
// events tail and aggregate show commands that inspect alice's account,
// and those print its events (decoded, versions 1 to 4, the rejected
// withdrawal absent) and its state folded from them.
func TestDemoEventsAndAggregate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers := strings.Join(kafkatest.Brokers(t), ",")
	var out bytes.Buffer
	if err := demo(ctx, &out, []string{"--burst", "5", "--brokers", brokers}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	printed := map[string][]string{} // "events tail", "aggregate show" -> the command's words
	for line := range strings.Lines(out.String()) {
		words := strings.Fields(line)
		if len(words) > 3 && words[0] == "interlock" {
			printed[words[1]+" "+words[2]] = words[1:]
		}
	}
	tail, show := printed["events tail"], printed["aggregate show"]
	if tail == nil || show == nil {
		t.Fatalf("the demo does not print the events tail and aggregate show commands:\n%s", out.String())
	}

	text, err := cli(ctx, append(tail, "--json")...)
	if err != nil {
		t.Fatalf("%q: %v\n%s", tail, err, text)
	}
	evs := decodeEvents(t, text)
	want := []struct{ typ, data string }{
		{"AccountOpened", `{"owner":"alice"}`},
		{"MoneyDeposited", `{"amount":100}`},
		{"MoneyWithdrawn", `{"amount":30}`},
		{"MoneyDeposited", `{"amount":25}`},
	}
	if len(evs) != len(want) {
		t.Fatalf("%q printed %d events, want %d:\n%s", tail, len(evs), len(want), text)
	}
	for i, w := range want {
		if e := evs[i]; e.Aggregate != "bank-account" || e.Version != int64(i+1) || e.Type != w.typ || string(e.Data) != w.data || e.Error != "" {
			t.Errorf("event %d: %+v (data %s), want %s %s at version %d", i, e, e.Data, w.typ, w.data, i+1)
		}
	}

	text, err = cli(ctx, append(show, "--json")...)
	if err != nil {
		t.Fatalf("%q: %v\n%s", show, err, text)
	}
	var shown struct {
		Version int64
		State   struct {
			Owner   string `json:"owner"`
			Balance int64  `json:"balance"`
		}
	}
	if err := json.Unmarshal([]byte(text), &shown); err != nil || shown.Version != 4 || shown.State.Owner != "alice" || shown.State.Balance != 95 {
		t.Errorf("%q: %+v, %v, want alice's account at version 4 with 95\n%s", show, shown, err, text)
	}
}
