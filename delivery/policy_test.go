package delivery

import (
	"testing"
	"time"
)

func TestMatchPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "mx.example.com", false},
		{"Example.COM", "example.com", true},
		{"*.example.com", "mx.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{".example.com", "a.b.example.com", true},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestDefaultReplyRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code     int
		enhanced string
		text     string
		want     ReplyAction // "" for no rule
	}{
		{421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail", ActionSuspend},
		{421, "4.7.0", "[TSS04] Messages from 1.2.3.4 temporarily deferred", ActionSuspend},
		{451, "4.7.500", "Server busy. Please try again later", ActionSuspend},
		{450, "4.2.1", "Too many messages, try again later", ""},
		{452, "4.2.2", "mailbox full, try again later", ""},
		{421, "4.4.5", "Too many connections, try again later", ActionHalve},
		{421, "4.3.2", "shutting down", ActionHalve},
		{421, "", "busy", ActionHalve},
		{450, "4.2.2", "mailbox full", ""},
		{550, "5.1.1", "no such user, try again later", ""},
	}
	for _, tt := range tests {
		var got ReplyAction
		for _, r := range DefaultReplyRules {
			if r.matches(tt.code, tt.enhanced, tt.text) {
				got = r.Action
				break
			}
		}
		if got != tt.want {
			t.Errorf("%d %s %s: action %q, want %q", tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
}

func TestPolicyFirstMatchWins(t *testing.T) {
	t.Parallel()
	a := &Agent{cfg: Config{MaxConns: 20, RcptsPerTxn: 50, TxnsPerConn: 100, TLS: TLSOpportunistic,
		Destinations: []Destination{
			{Match: "*.google.test", MaxConns: 5, RateDelay: time.Second},
			{Match: "hosted.test", MaxConns: 2, TLS: TLSRequired},
		}}}
	// A domain hosted at the provider is matched through its MX host.
	if l := a.policy("hosted.test", []string{"aspmx.l.google.test"}); l.maxConns != 5 || l.rateDelay != time.Second || l.tls != TLSOpportunistic {
		t.Errorf("policy = %+v, want the MX pattern's", l)
	}
	if l := a.policy("other.test", []string{"mx.other.test"}); l.maxConns != 20 || l.rcptsPerTxn != 50 {
		t.Errorf("policy = %+v, want the defaults", l)
	}
}
