package delivery

// The fallback relay (sendmail's FallbackMXhost) and the fallback tier
// built on it. With FallbackEveryAttempt, each attempt tries the MX
// hosts and sends what they deferred to the relay. With
// FallbackAfterFirstAttempt the node is a first-attempt server, the
// high-volume layout sendmail operators used: it makes one attempt at
// the MX hosts and hands whatever that attempt did not settle to the
// fallback host, which has the big, slower queue; a recipient the relay
// could not take either is retried by the queue, at the relay only. So
// the first-attempt spool holds little beyond mail in its first attempt.
// The relay knows its first-attempt nodes as peers ([relay] in the
// config), by address or by the client certificate (ClientCert) they
// present to it, and to it only.

import (
	"context"
	"crypto/tls"
	"fmt"

	"fanmail/envelope"
)

// FallbackPolicy says which recipients go to the FallbackRelay.
type FallbackPolicy string

const (
	// FallbackEveryAttempt sends the relay, in every attempt, the
	// recipients every MX deferred (not those deferred because their
	// destination was busy or suspended).
	FallbackEveryAttempt FallbackPolicy = "every_attempt"
	// FallbackAfterFirstAttempt sends the relay whatever the first
	// attempt left deferred, in that attempt (all but recipients of a
	// destination too busy to try), and every later attempt goes to the
	// relay alone.
	FallbackAfterFirstAttempt FallbackPolicy = "after_first_attempt"
)

func checkFallback(cfg *Config) error {
	switch cfg.FallbackPolicy {
	case "":
		cfg.FallbackPolicy = DefaultConfig().FallbackPolicy
	case FallbackEveryAttempt, FallbackAfterFirstAttempt:
	default:
		return fmt.Errorf("fallback policy %q: want %s or %s", cfg.FallbackPolicy, FallbackEveryAttempt, FallbackAfterFirstAttempt)
	}
	if cfg.FallbackPolicy == FallbackAfterFirstAttempt && cfg.FallbackRelay == "" {
		return fmt.Errorf("fallback policy %s needs a fallback relay", cfg.FallbackPolicy)
	}
	return nil
}

// relayOnly reports whether env goes to the fallback relay alone: a
// first-attempt node's retry.
func (a *Agent) relayOnly(env envelope.Request) bool {
	return a.cfg.FallbackPolicy == FallbackAfterFirstAttempt && env.Attempts > 0
}

// handOff reports whether the fallback relay gets a recipient with
// result r from this attempt's MX hosts.
func (a *Agent) handOff(r envelope.Result) bool {
	if r.Status != envelope.Deferred || a.closed.Load() {
		return false // settled, or the agent is shutting down
	}
	if a.cfg.FallbackPolicy == FallbackAfterFirstAttempt {
		// Only a destination too busy for a connection slot tried
		// nothing; greylisted, throttled, suspended or dead ones had
		// their attempt.
		return r.Code != 0 || r.Enhanced != "4.4.5"
	}
	return r.RetryAfter == 0
}

// deliverRelay sends every recipient of env to the fallback relay.
func (a *Agent) deliverRelay(ctx context.Context, env envelope.Request, results []envelope.Result) {
	t := &txn{a: a, env: env, results: results}
	t.runRoute(ctx, a.cfg.FallbackRelay)
	for i := range results {
		results[i].Text = "via fallback relay: " + results[i].Text
	}
}

// clientCertFor is what a connection to relay offers when the server
// asks for a client certificate: ClientCert to the fallback relay, which
// may know this node by it; nothing to anyone else.
func (cfg *Config) clientCertFor(relay string) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if cfg.ClientCert == nil || relay != cfg.FallbackRelay {
		return nil
	}
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cfg.ClientCert() }
}
