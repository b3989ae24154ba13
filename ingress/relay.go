package ingress

// Relaying, for peers only. fanmail takes mail for its own domains (its
// lists, aliases and hostname) from anyone, and relays mail for other
// domains only for its relay peers: the first-attempt nodes whose
// fallback host it is (delivery's fallback policy), known by their
// address or by the client certificate they present over STARTTLS, as
// Postfix's mynetworks and relay_clientcerts. Anyone else asking to
// relay gets 550 5.7.1.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"net/netip"
	"slices"

	"github.com/emersion/go-smtp"
)

// Peers are the clients that may relay through this server.
type Peers struct {
	Networks []netip.Prefix
	// Certs are SHA-256 fingerprints of the client certificates that
	// make a peer of whoever presents one over STARTTLS.
	Certs [][32]byte
}

var errRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
	Message: "Relay access denied"}

// peerTLS is the listener's TLS config, asking clients for a certificate
// (without checking its chain: a peer is known by its fingerprint) when
// peers may be known by one.
func peerTLS(cfg *tls.Config, p Peers) *tls.Config {
	if cfg == nil || len(p.Certs) == 0 {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ClientAuth = tls.RequestClientCert
	return cfg
}

// peer reports whether the session's client may relay: its address is
// in a peer network, or it presented a peer's certificate over TLS.
func (ss *session) peer() bool {
	p := ss.srv.cfg.Peers
	if ip, err := netip.ParseAddr(ss.remote); err == nil {
		ip = ip.Unmap()
		for _, n := range p.Networks {
			if n.Contains(ip) {
				return true
			}
		}
	}
	if len(p.Certs) == 0 {
		return false
	}
	st, ok := ss.guard.tlsState()
	if !ok || len(st.PeerCertificates) == 0 {
		return false
	}
	return slices.Contains(p.Certs, sha256.Sum256(st.PeerCertificates[0].Raw))
}

// unknownRecipient answers RCPT for an address that is nothing here: a
// relay recipient of a peer's when its domain is not ours, else 550
// (5.1.1 in our domains, 5.7.1 relay denied in others).
func (ss *session) unknownRecipient(ctx context.Context, to, rcpt, domain string) error {
	ours, err := ss.srv.exp.Serves(ctx, domain)
	switch {
	case err != nil:
		ss.srv.log.Error("recipient lookup failed", "rcpt", to, "err", err)
		ss.srv.countRejected("RCPT", "temp_failure")
		return errTempStore
	case ours:
		// One reply for every unknown address: no hint about which
		// local names exist.
		ss.rejected("RCPT", "unknown_recipient", "from", ss.from, "rcpt", to)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: "No such list here; this server does not relay"}
	case !ss.peer():
		ss.rejected("RCPT", "relay_denied", "from", ss.from, "rcpt", to)
		return errRelayDenied
	}
	if !ss.seen["relay:"+rcpt] {
		if ss.seen == nil {
			ss.seen = map[string]bool{}
		}
		ss.seen["relay:"+rcpt] = true
		ss.relay = append(ss.relay, rcpt)
	}
	return nil
}
