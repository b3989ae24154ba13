package ingress

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"fanmail/internal/testutil"
)

// clientCert is a fresh self-signed client certificate.
func clientCert(t *testing.T) tls.Certificate {
	t.Helper()
	return testutil.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "first.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// startTLSWith is startTLS presenting cert.
func (r *raw) startTLSWith(cert *tls.Certificate) {
	r.t.Helper()
	if rep := r.cmd("STARTTLS"); !strings.HasPrefix(rep, "220 2.0.0") {
		r.t.Fatalf("STARTTLS: %s", rep)
	}
	cfg := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(r.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("handshake: %v", err)
	}
	r.SetConn(tc)
}

// A peer, known by its address, relays mail for other domains: queued
// from its sender as it came, with a Received header, beside a list's
// post in the same transaction. Others are denied with 550 5.7.1, and a
// peer gets 5.1.1 for an unknown address in a domain of ours.
func TestRelayForPeerAddress(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Peers: Peers{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.4.0/24")}}})

	r, _ := rawDial(t, f.addr, "127.0.0.1")
	r.ehlo()
	r.cmd("MAIL FROM:<owner-news@lists.first.example>")
	if rep := r.cmd("RCPT TO:<someone@elsewhere.example>"); !strings.HasPrefix(rep, "550 5.7.1 Relay access denied") {
		t.Errorf("relay from a non-peer: %s, want 550 5.7.1", rep)
	}

	p, _ := rawDial(t, f.addr, "127.0.4.9")
	p.ehlo()
	p.cmd("MAIL FROM:<owner-news@lists.first.example>")
	for _, rcpt := range []string{"a@elsewhere.example", "b@elsewhere.example", "c@other.example", "announce@lists.example.org"} {
		if rep := p.cmd("RCPT TO:<" + rcpt + ">"); !strings.HasPrefix(rep, "250") {
			t.Fatalf("peer's RCPT %s: %s", rcpt, rep)
		}
	}
	if rep := p.cmd("RCPT TO:<nosuchlist@lists.example.org>"); !strings.HasPrefix(rep, "550 5.1.1") {
		t.Errorf("peer's RCPT to an unknown address of ours: %s, want 550 5.1.1", rep)
	}
	p.cmd("DATA")
	rep := p.cmd(post + ".")
	id, ok := strings.CutPrefix(rep, "250 2.0.0 OK queued as ")
	if !ok {
		t.Fatalf("end of DATA: %s", rep)
	}
	md, err := f.queue.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	relayed := map[string]string{}
	for _, e := range md.Envelopes {
		for _, r := range e.Recipients {
			relayed[r.Address] = e.Sender
		}
	}
	for _, rcpt := range []string{"a@elsewhere.example", "b@elsewhere.example", "c@other.example"} {
		if relayed[rcpt] != "owner-news@lists.first.example" {
			t.Errorf("relayed %s from <%s>, want the sender as it came", rcpt, relayed[rcpt])
		}
	}
	if len(relayed) != 3+3 { // and the list's three members
		t.Errorf("queued recipients %v", relayed)
	}
	var found bool
	for _, pre := range f.modes.allPrefixes() {
		if bytes.HasPrefix(pre, []byte("Received: from client.example.org ([127.0.4.9])")) && !bytes.Contains(pre, []byte("List-Id")) {
			found = true
		}
	}
	if !found {
		t.Errorf("no relay part with only a Received header among %q", f.modes.allPrefixes())
	}
}

// A peer known by its client certificate relays once it has shown it
// over STARTTLS; without it, or with another, relaying is denied.
func TestRelayForPeerCertificate(t *testing.T) {
	t.Parallel()
	peerCert, otherCert := clientCert(t), clientCert(t)
	f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t),
		Peers: Peers{Certs: [][32]byte{sha256.Sum256(peerCert.Certificate[0])}}})
	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		tls  bool
		want string
	}{
		{"clear text", nil, false, "550 5.7.1"},
		{"TLS without a certificate", nil, true, "550 5.7.1"},
		{"another certificate", &otherCert, true, "550 5.7.1"},
		{"the peer's certificate", &peerCert, true, "250 2.0.0"},
	} {
		r, _ := rawDial(t, f.addr, "")
		r.ehlo()
		if tt.tls {
			r.startTLSWith(tt.cert)
			r.ehlo()
		}
		r.cmd("MAIL FROM:<owner-news@lists.first.example>")
		if rep := r.cmd("RCPT TO:<someone@elsewhere.example>"); !strings.HasPrefix(rep, tt.want) {
			t.Errorf("%s: RCPT elsewhere: %s, want %s", tt.name, rep, tt.want)
		}
	}
}
