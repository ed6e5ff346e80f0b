package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func healthFlags(fs *flag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.addr, "addr", "", "serve's HTTP address (default: INTERLOCK_HTTP_ADDR, else :8080); an address without a host means this host")
	fs.BoolVar(&inv.live, "live", false, "ask /healthz (alive, for liveness checks) instead of /readyz (ready to serve)")
	fs.DurationVar(&inv.timeout, "timeout", 2*time.Second, "longest the check waits for an answer")
}

// healthcheck asks serve's /readyz (or /healthz) on this host: the only
// way a container image without a shell or an HTTP client can check
// itself.
func healthcheck(ctx context.Context, inv *invocation) error {
	addr := inv.addr
	if addr == "" {
		addr = os.Getenv("INTERLOCK_HTTP_ADDR")
	}
	if addr == "" {
		addr = ":8080"
	}
	if addr == "off" {
		return errors.New("healthcheck: serve's HTTP is off (INTERLOCK_HTTP_ADDR=off): there is nothing to ask")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	path := "/readyz"
	if inv.live {
		path = "/healthz"
	}
	url := "http://" + net.JoinHostPort(host, port) + path
	ctx, cancel := context.WithTimeout(ctx, inv.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err) // names the URL
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	answer := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s: %s", url, resp.Status, answer)
	}
	fmt.Fprintf(inv.stdout, "%s: %s\n", url, answer)
	return nil
}
