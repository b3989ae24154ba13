package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert := testutil.SelfSigned(t, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.tls.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"mx.tls.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return cert, pool
}

// tlsSink is a go-smtp server offering STARTTLS that records, for each
// transaction, whether it ran under TLS and whether the session resumed.
type tlsSink struct {
	addr string
	mu   sync.Mutex
	txns []tlsTxn
}

type tlsTxn struct{ TLS, Resumed bool }

func newTLSSink(t *testing.T, cfg *tls.Config) *tlsSink {
	t.Helper()
	s := &tlsSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &tlsSession{s: s, c: c}, nil
	}))
	srv.Domain = "mx.tls.test"
	srv.TLSConfig = cfg
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *tlsSink) transactions() []tlsTxn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tlsTxn(nil), s.txns...)
}

type tlsSession struct {
	s *tlsSink
	c *smtp.Conn
}

func (ss *tlsSession) Mail(string, *smtp.MailOptions) error {
	st, ok := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.txns = append(ss.s.txns, tlsTxn{TLS: ok, Resumed: ok && st.DidResume})
	ss.s.mu.Unlock()
	return nil
}
func (ss *tlsSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *tlsSession) Data(r io.Reader) error               { _, err := io.ReadAll(r); return err }
func (ss *tlsSession) Reset()                               {}
func (ss *tlsSession) Logout() error                        { return nil }

// tlsAgent is a routedAgent that opens a new connection per envelope,
// to see session resumption.
func tlsAgent(t *testing.T, addr string, tweak func(*Config)) *Agent {
	t.Helper()
	return routedAgent(t, addr, func(cfg *Config) {
		cfg.TxnsPerConn = 1
		if tweak != nil {
			tweak(cfg)
		}
	})
}

func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	tests := []struct {
		name    string
		server  *tls.Config // nil: no STARTTLS offered
		cfg     func(*Config)
		want    brief
		wantTxn []tlsTxn
	}{
		{
			name:    "opportunistic uses TLS, unverified, and resumes",
			server:  &tls.Config{Certificates: []tls.Certificate{cert}},
			want:    sent,
			wantTxn: []tlsTxn{{true, false}, {true, true}},
		},
		{
			name:    "required with a trusted certificate",
			server:  &tls.Config{Certificates: []tls.Certificate{cert}},
			cfg:     func(c *Config) { c.TLS, c.TLSRootCAs = TLSRequired, pool },
			want:    sent,
			wantTxn: []tlsTxn{{true, false}, {true, true}},
		},
		{
			name:   "required with an untrusted certificate",
			server: &tls.Config{Certificates: []tls.Certificate{cert}},
			cfg:    func(c *Config) { c.TLS = TLSRequired },
			want:   brief{envelope.Deferred, 0, "4.7.5"},
		},
		{
			name: "required but not offered",
			cfg:  func(c *Config) { c.TLS = TLSRequired },
			want: brief{envelope.Deferred, 0, "4.7.10"},
		},
		{
			name:    "none",
			server:  &tls.Config{Certificates: []tls.Certificate{cert}},
			cfg:     func(c *Config) { c.TLS = TLSNone },
			want:    sent,
			wantTxn: []tlsTxn{{false, false}, {false, false}},
		},
		{
			name:   "per-destination override",
			server: &tls.Config{Certificates: []tls.Certificate{cert}},
			cfg: func(c *Config) {
				c.TLS = TLSRequired
				c.Destinations = []Destination{{Match: "example.test", TLS: TLSNone}}
			},
			want:    sent,
			wantTxn: []tlsTxn{{false, false}, {false, false}},
		},
		{
			name:    "opportunistic falls back to plain text after a failed handshake",
			server:  &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert},
			want:    sent,
			wantTxn: []tlsTxn{{false, false}, {false, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTLSSink(t, tt.server)
			a := tlsAgent(t, s.addr, tt.cfg)
			for _, r := range []string{"a", "b"} {
				checkBriefs(t, []brief{tt.want}, a.Deliver(ctxT(t), request("example.test", r)))
			}
			got := s.transactions()
			if len(got) != len(tt.wantTxn) {
				t.Fatalf("server transactions %+v, want %+v", got, tt.wantTxn)
			}
			for i := range got {
				if got[i] != tt.wantTxn[i] {
					t.Errorf("transaction %d: %+v, want %+v", i, got[i], tt.wantTxn[i])
				}
			}
		})
	}
}
