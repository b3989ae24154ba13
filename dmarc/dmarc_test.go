package dmarc

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"fanmail/internal/fakenet"
	"fanmail/resolver"
)

// TestLookup runs policy discovery against an in-process DNS server.
func TestLookup(t *testing.T) {
	t.Parallel()
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	for _, rr := range []string{
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:d@reject.test"`,
		`_dmarc.quarantine.test. 300 IN TXT "v=DMARC1; " "p=quarantine"`,
		`_dmarc.none.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.spf-too.test. 300 IN TXT "v=spf1 -all"`,
		`_dmarc.spf-too.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.bad-p.test. 300 IN TXT "v=DMARC1; p=always"`,
		`_dmarc.v-not-first.test. 300 IN TXT "p=reject; v=DMARC1"`,
		`_dmarc.version2.test. 300 IN TXT "v=DMARC2; p=reject"`,
		// Organizational domains: sp= applies to subdomains that publish
		// nothing themselves.
		`_dmarc.example.co.uk. 300 IN TXT "v=DMARC1; p=reject; sp=none"`,
		`_dmarc.org-only.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`_dmarc.own.org-only.test. 300 IN TXT "v=DMARC1; p=none"`,
	} {
		if err := d.AddRR(rr); err != nil {
			t.Fatal(err)
		}
	}
	d.AddName("_dmarc.nodata.test")
	d.SetRcode("_dmarc.broken.test", dns.RcodeServerFailure)
	d.SetRcode("_dmarc.broken-org.test", dns.RcodeServerFailure)
	res, err := resolver.New(resolver.Config{Servers: []string{d.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	c := New(res)
	tests := []struct {
		domain  string
		want    Result
		wantErr bool
	}{
		{"reject.test", Result{PolicyReject, "_dmarc.reject.test"}, false},
		{"Reject.TEST.", Result{PolicyReject, "_dmarc.reject.test"}, false},
		{"quarantine.test", Result{PolicyQuarantine, "_dmarc.quarantine.test"}, false},
		{"none.test", Result{PolicyNone, "_dmarc.none.test"}, false},
		{"norecord.test", Result{}, false},
		{"nodata.test", Result{}, false},
		{"spf-too.test", Result{PolicyReject, "_dmarc.spf-too.test"}, false},
		{"two.test", Result{PolicyNone, "_dmarc.two.test"}, false},
		{"bad-p.test", Result{PolicyNone, "_dmarc.bad-p.test"}, false},
		{"v-not-first.test", Result{}, false},
		{"version2.test", Result{}, false},
		{"mail.example.co.uk", Result{PolicyNone, "_dmarc.example.co.uk"}, false},
		{"example.co.uk", Result{PolicyReject, "_dmarc.example.co.uk"}, false},
		{"a.b.org-only.test", Result{PolicyQuarantine, "_dmarc.org-only.test"}, false},
		{"own.org-only.test", Result{PolicyNone, "_dmarc.own.org-only.test"}, false},
		{"co.uk", Result{}, false},
		{"[192.0.2.1]", Result{}, false},
		{"localhost", Result{}, false},
		{"broken.test", Result{}, true},
		{"sub.broken-org.test", Result{}, true},
	}
	for _, tt := range tests {
		got, err := c.Lookup(context.Background(), tt.domain)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v, error %v", tt.domain, got, err, tt.want, tt.wantErr)
		}
	}
	if !PolicyReject.Strict() || !PolicyQuarantine.Strict() || PolicyNone.Strict() {
		t.Error("Strict is wrong")
	}
}
