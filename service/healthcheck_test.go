package service

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheck: the command asks serve's probes on this host and
// succeeds only on a 200; an unready answer, a disabled HTTP server and
// nothing listening are errors that say which.
func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(httpHandler(fakeHealth{live: true, ready: false}, http.NotFoundHandler()))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), append([]string{"healthcheck"}, args...), &out, &errOut, nil)
		return out.String(), err
	}

	if out, err := run("--addr", ":"+port, "--live"); err != nil || !strings.Contains(out, `{"live":true}`) {
		t.Errorf("live: %q, %v; want the answer and no error", out, err)
	}
	if _, err := run("--addr", "127.0.0.1:"+port); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), `{"ready":false}`) {
		t.Errorf("not ready: %v; want an error with the 503 and the answer", err)
	}
	t.Setenv("INTERLOCK_HTTP_ADDR", "off")
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "HTTP is off") {
		t.Errorf("HTTP off: %v; want an error saying so", err)
	}
	t.Setenv("INTERLOCK_HTTP_ADDR", "0.0.0.0:"+port)
	srv.Close()
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:"+port+"/readyz") {
		t.Errorf("nothing listening: %v; want an error naming the URL asked", err)
	}
}
