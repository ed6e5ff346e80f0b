package main

import (
	"bytes"
	"context"
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
