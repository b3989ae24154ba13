package ingress

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
)

// testTLS is a server TLS config with a fresh self-signed certificate.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert := testutil.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fanmail.test"},
		DNSNames: []string{"fanmail.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// startTLS sends STARTTLS, expects 220 and runs the handshake; the
// client then speaks through TLS.
func (r *raw) startTLS() {
	r.t.Helper()
	if rep := r.cmd("STARTTLS"); !strings.HasPrefix(rep, "220 2.0.0") {
		r.t.Fatalf("STARTTLS: %s", rep)
	}
	tc := tls.Client(r.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("handshake: %v", err)
	}
	r.SetConn(tc)
}

// ehlo sends EHLO and returns the extensions offered.
func (r *raw) ehlo() []string {
	r.t.Helper()
	r.send("EHLO client.example.org")
	_, msg, err := r.Text.ReadResponse(250)
	if err != nil {
		r.t.Fatalf("EHLO: %v", err)
	}
	return strings.Split(msg, "\n")[1:]
}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// A post over STARTTLS: EHLO offers it only before, the client must say
// EHLO again after, and the Received header names version and cipher.
func TestSTARTTLSPost(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t)})
	r, _ := rawDial(t, f.addr, "")
	if ext := r.ehlo(); !has(ext, "STARTTLS") || !has(ext, "PIPELINING") {
		t.Errorf("EHLO before TLS offers %q, want STARTTLS among them", ext)
	}
	r.startTLS()
	if rep := r.cmd("MAIL FROM:<poster@example.org>"); !strings.HasPrefix(rep, "503 5.5.1") {
		t.Errorf("MAIL after STARTTLS without EHLO: %s, want 503 5.5.1", rep)
	}
	if ext := r.ehlo(); has(ext, "STARTTLS") || !has(ext, "SMTPUTF8") {
		t.Errorf("EHLO under TLS offers %q, want SMTPUTF8 and no STARTTLS", ext)
	}
	if rep := r.cmd("STARTTLS"); !strings.HasPrefix(rep, "554 5.5.1") {
		t.Errorf("second STARTTLS: %s, want 554 5.5.1", rep)
	}
	r.cmd("MAIL FROM:<poster@example.org>")
	r.cmd("RCPT TO:<announce@lists.example.org>")
	if rep := r.cmd("DATA"); !strings.HasPrefix(rep, "354") {
		t.Fatalf("DATA: %s", rep)
	}
	if rep := r.cmd(post + "."); !strings.HasPrefix(rep, "250 2.0.0 OK queued as") {
		t.Fatalf("end of DATA: %s", rep)
	}
	p := f.modes.allPrefixes()
	if len(p) != 1 || !bytes.Contains(p[0], []byte("with ESMTPS")) || !bytes.Contains(p[0], []byte("version=TLS1.3 cipher=TLS_")) {
		t.Errorf("Received headers %q, want ESMTPS with the TLS version and cipher", p)
	}
	if st := f.srv.Stats(); st.BytesIn < int64(len(post)) || st.BytesOut == 0 {
		t.Errorf("byte counts %d in, %d out: the TLS part is not counted", st.BytesIn, st.BytesOut)
	}
}

// STARTTLS refused: inside a transaction, with arguments, with commands
// pipelined after it (which are dropped, never read), and where no
// certificate is configured.
func TestSTARTTLSRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		noTLS  bool
		setup  []string
		send   []string // in one write
		want   []string
		closed bool
	}{
		{name: "in a transaction", setup: []string{"EHLO client.example.org", "MAIL FROM:<poster@example.org>"},
			send: []string{"STARTTLS"}, want: []string{"503 5.5.1"}},
		{name: "with an argument", setup: []string{"EHLO client.example.org"},
			send: []string{"STARTTLS now"}, want: []string{"501 5.5.4"}},
		{name: "commands pipelined after it", setup: []string{"EHLO client.example.org"},
			send: []string{"STARTTLS", "MAIL FROM:<poster@example.org>", "RCPT TO:<announce@lists.example.org>"},
			want: []string{"554 5.5.0"}, closed: true},
		{name: "pipelined with the commands before it", setup: nil,
			send: []string{"EHLO client.example.org", "STARTTLS", "NOOP"},
			want: []string{"250", "554 5.5.0"}, closed: true},
		{name: "no certificate", noTLS: true, setup: []string{"EHLO client.example.org"},
			send: []string{"STARTTLS"}, want: []string{"502 5.5.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{MaxMessageSize: 1 << 20, TLS: testTLS(t)}
			if tt.noTLS {
				cfg.TLS = nil
			}
			f := startWith(t, cfg)
			r, _ := rawDial(t, f.addr, "")
			for _, line := range tt.setup {
				if rep := r.cmd(line); rep[0] != '2' {
					t.Fatalf("%s: %s", line, rep)
				}
			}
			r.send(tt.send...)
			var got []string
			for range tt.want {
				rep, err := r.Reply()
				if err != nil {
					got = append(got, "closed")
					break
				}
				if rep[4] < '0' || rep[4] > '9' {
					rep = rep[:3] // EHLO's reply: no enhanced code
				}
				got = append(got, rep[:min(len(rep), 9)])
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
			if tt.closed {
				r.wantClosed()
				if len(f.modes.all()) != 0 || f.srv.Stats().Refused["starttls_pipelining"] != 1 {
					t.Errorf("after a refused pipelined STARTTLS: %v", f.srv.Stats())
				}
				return
			}
			if rep := r.cmd("NOOP"); !strings.HasPrefix(rep, "250") {
				t.Errorf("session after the refusal: %s", rep)
			}
		})
	}
}

// Limits hold under TLS: go-smtp's own replies still count as errors,
// and the session's lifetime ends with the guard's 421 through TLS.
func TestLimitsUnderTLS(t *testing.T) {
	t.Parallel()
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t), MaxErrors: 3})
		r, _ := rawDial(t, f.addr, "")
		r.ehlo()
		r.startTLS()
		r.ehlo()
		var got []string
		for range 5 {
			r.send("RCPT TO:<announce@lists.example.org>") // no MAIL: go-smtp answers
			rep, err := r.Reply()
			if err != nil {
				break
			}
			got = append(got, rep[:min(len(rep), len(tooManyErrors))])
		}
		want := append(repeat("502 5.5.1", 3), tooManyErrors)
		for i := range min(3, len(got)) {
			got[i] = got[i][:9]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("replies under TLS (-want +got):\n%s", diff)
		}
		r.wantClosed()
	})
	t.Run("lifetime", func(t *testing.T) {
		t.Parallel()
		f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t), SessionTimeout: time.Second})
		r, _ := rawDial(t, f.addr, "")
		r.ehlo()
		r.startTLS()
		rep, err := r.Reply()
		if err != nil || !strings.HasPrefix(rep, "421 4.4.2") || !strings.Contains(rep, "session time limit") {
			t.Errorf("idle under TLS past the lifetime: %q, %v; want the guard's 421 4.4.2", rep, err)
		}
	})
}

// With RequireTLS, MAIL before STARTTLS is 530 5.7.0, and taken after.
func TestRequireTLS(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t), RequireTLS: true})
	r, _ := rawDial(t, f.addr, "")
	r.ehlo()
	if rep := r.cmd("MAIL FROM:<poster@example.org>"); !strings.HasPrefix(rep, "530 5.7.0") {
		t.Errorf("clear-text MAIL: %s, want 530 5.7.0", rep)
	}
	r.startTLS()
	r.ehlo()
	if rep := r.cmd("MAIL FROM:<poster@example.org>"); !strings.HasPrefix(rep, "250") {
		t.Errorf("MAIL under TLS: %s", rep)
	}
}

// The bare <postmaster> (RFC 5321 §4.5.1), in any case, reaches the
// admin address, in clear text and under TLS; the same words inside a
// message, sent with DATA or BDAT, are the message's and left alone.
func TestBarePostmaster(t *testing.T) {
	t.Parallel()
	f := startWith(t, Config{MaxMessageSize: 1 << 20, TLS: testTLS(t)})
	body := "Subject: to the postmaster\r\n\r\nRCPT TO:<postmaster>\r\nSTARTTLS\r\n"
	for i, rcpt := range []string{"RCPT TO:<postmaster>", "rcpt to: <PostMaster>", "RCPT TO:<POSTMASTER>"} {
		r, _ := rawDial(t, f.addr, "")
		r.ehlo()
		if i == 1 {
			r.startTLS()
			r.ehlo()
		}
		r.cmd("MAIL FROM:<someone@example.org>")
		if rep := r.cmd(rcpt); !strings.HasPrefix(rep, "250") {
			t.Fatalf("%s: %s", rcpt, rep)
		}
		if i == 2 {
			r.send("BDAT " + strconv.Itoa(len(body)) + " LAST")
			r.Conn.Write([]byte(body))
		} else {
			r.cmd("DATA")
			r.send(body + ".")
		}
		rep, err := r.Reply()
		if err != nil || !strings.HasPrefix(rep, "250 2.0.0 OK queued as ") {
			t.Fatalf("end of message after %s: %q %v", rcpt, rep, err)
		}
		md, err := f.queue.Show(strings.TrimPrefix(rep, "250 2.0.0 OK queued as "))
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Envelopes) != 1 || len(md.Envelopes[0].Recipients) != 1 || md.Envelopes[0].Recipients[0].Address != "admin@example.org" {
			t.Errorf("%s queued as %+v, want one envelope to admin@example.org", rcpt, md.Envelopes)
		}
		if rep := r.cmd("NOOP"); !strings.HasPrefix(rep, "250") {
			t.Errorf("session after the message: %s", rep)
		}
	}
	for _, b := range f.modes.allBodies() {
		if string(b) != body {
			t.Errorf("body queued as %q, want %q", b, body)
		}
	}
	r, _ := rawDial(t, f.addr, "")
	r.ehlo()
	r.cmd("MAIL FROM:<someone@example.org>")
	for _, rcpt := range []string{"RCPT TO:<postmasterx>", "RCPT TO:<abuse>"} {
		if rep := r.cmd(rcpt); !strings.HasPrefix(rep, "501") {
			t.Errorf("%s: %s, want go-smtp's 501", rcpt, rep)
		}
	}
}
