package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/interlock-go/interlock"
	"github.com/interlock-go/interlock/examples/bank"
	"github.com/interlock-go/interlock/gateway"
)

// FuzzRequests: whatever the body, the gateway answers with a client
// error (or 503: the application here is not started), never a panic or a
// server error.
func FuzzRequests(f *testing.F) {
	app, err := interlock.NewBuilder(interlock.WithLogger(quiet())).RegisterAggregate(bank.Accounts()).Build()
	if err != nil {
		f.Fatal(err)
	}
	g, err := gateway.New(app, gateway.Config{Token: token, MaxBody: 1 << 12, Logger: quiet()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(false, "DepositMoney", `{"aggregateId":"01J00000000000000000000000","payload":{"amount":1}}`)
	f.Add(false, "OpenAccount", `{"aggregateId":"x","expectedVersion":-1}`)
	f.Add(true, "BalanceOf", `{"query":{"ID":"01J00000000000000000000000"},"after":[{"topic":"t","partition":-1,"offset":-5}]}`)
	f.Add(false, "DepositMoney", `{"payload":{"amount":"lots"}} {}`)
	f.Fuzz(func(t *testing.T, query bool, typ, body string) {
		path := "/v1/commands/" + url.PathEscape(typ)
		if query {
			path = "/v1/queries/" + url.PathEscape(typ)
		}
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: status %d: %s", path, body, w.Code, w.Body.String())
		}
	})
}
