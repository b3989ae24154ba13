package config

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"fanmail/delivery"
	"fanmail/ingress"
)

// Relay is [relay]: the peers this node relays mail for, as the fallback
// host of first-attempt nodes. Nobody else may relay through it.
type Relay struct {
	// Peers are addresses or networks ("192.0.2.7", "10.1.0.0/16").
	Peers []string `toml:"peers"`
	// PeerCerts are the SHA-256 fingerprints (hex, colons allowed) of
	// client certificates a peer presents over STARTTLS; they need
	// [tls] cert and key.
	PeerCerts []string `toml:"peer_certs"`
}

// validateRelay checks [relay] and the fallback policy that uses it.
func (c *Config) validateRelay(bad func(key, format string, args ...any)) {
	for _, p := range c.Relay.Peers {
		if _, err := parsePeer(p); err != nil {
			bad("relay.peers", "%q is not an address or network such as \"192.0.2.7\" or \"10.1.0.0/16\"", p)
		}
	}
	for _, f := range c.Relay.PeerCerts {
		if _, err := parseFingerprint(f); err != nil {
			bad("relay.peer_certs", "%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", f)
		}
	}
	if len(c.Relay.PeerCerts) > 0 && c.TLS.Cert == "" {
		bad("relay.peer_certs", "needs tls.cert and tls.key: peers present their certificates over STARTTLS")
	}
	switch p := delivery.FallbackPolicy(c.Delivery.FallbackPolicy); p {
	case delivery.FallbackEveryAttempt:
	case delivery.FallbackAfterFirstAttempt:
		if c.Delivery.FallbackRelay == "" {
			bad("delivery.fallback_policy", "%s needs delivery.fallback_relay", p)
		}
	default:
		bad("delivery.fallback_policy", "%q is not %s or %s", p, delivery.FallbackEveryAttempt, delivery.FallbackAfterFirstAttempt)
	}
}

// RelayPeers is [relay] as ingress takes it.
func (c *Config) RelayPeers() ingress.Peers {
	p := ingress.Peers{Networks: parsePeers(c.Relay.Peers)}
	for _, s := range c.Relay.PeerCerts {
		if f, err := parseFingerprint(s); err == nil {
			p.Certs = append(p.Certs, f)
		}
	}
	return p
}

func parsePeer(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// parsePeers parses validated addresses and networks.
func parsePeers(ss []string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		if p, err := parsePeer(s); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// peerStrings writes networks as parsePeer reads them, a single address
// bare.
func peerStrings(ps []netip.Prefix) []string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			ss[i] = p.Addr().String()
		} else {
			ss[i] = p.String()
		}
	}
	return ss
}

func parseFingerprint(s string) ([32]byte, error) {
	var f [32]byte
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("not a SHA-256 fingerprint")
	}
	copy(f[:], b)
	return f, nil
}
