package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// writeCert writes a self-signed certificate for fanmail.test with the
// given serial number, and its key, to cert and key (replacing them by
// rename, as a certificate renewal does).
func writeCert(t *testing.T, cert, key string, serial int64) {
	t.Helper()
	c := testutil.SelfSigned(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "fanmail.test"},
		DNSNames:     []string{"fanmail.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	kder, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{cert: {Type: "CERTIFICATE", Bytes: c.Certificate[0]}, key: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsServer starts fanmail with a certificate (serial 1) and extra
// config, and a list news@lists.test with one member at d00.test.
func tlsServer(t *testing.T, extra string) (n *fakeNet, p *proc, cert, key string) {
	t.Helper()
	n = newFakeNet(t, testDomains(1), nil)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cert, key, 1)
	cfg := n.writeConfig(t, t.TempDir(), fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\n%s", cert, key, extra))
	makeList(t, cfg, "news@lists.test", testDomains(1), []int{1})
	return n, startFanmail(t, cfg), cert, key
}

// A post sent by swaks over STARTTLS is delivered, and its Received
// header says it came over TLS.
func TestSTARTTLSWithSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not found: install Debian's swaks package (and libnet-ssleay-perl for its TLS)")
	}
	if out, _ := exec.Command(swaks, "--support").CombinedOutput(); !strings.Contains(string(out), "TLS supported") {
		t.Skip("swaks has no TLS: install Debian's libnet-ssleay-perl package")
	}
	n, p, _, _ := tlsServer(t, "")
	out, err := exec.Command(swaks, "--server", p.addr, "--tls", "--helo", "poster.example.org",
		"--from", "poster@example.org", "--to", "news@lists.test",
		"--header", "Subject: over TLS", "--body", "sent with swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks --tls: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "=== TLS started") || !strings.Contains(string(out), "queued as") {
		t.Errorf("swaks did not go through STARTTLS to a 250:\n%s", out)
	}
	n.waitDelivered(t, 1, 20*time.Second, p)
	d := n.sinks["d00.test"].Deliveries()[0]
	if !strings.Contains(string(d.Data), "with ESMTPS") || !strings.Contains(string(d.Data), "version=TLS1.") {
		t.Errorf("Received header does not show TLS:\n%s", d.Data)
	}
}

// Commands pipelined after STARTTLS are refused with the connection,
// never read as if they came through TLS (CVE-2011-0411); a client that
// waits for the 220 gets TLS, and fanmail's error limit goes on counting
// the replies under it.
func TestSTARTTLSInjectionRefused(t *testing.T) {
	n, p, _, _ := tlsServer(t, "")
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "EHLO poster.example.org\r\n")
	if _, msg, err := tp.ReadResponse(250); err != nil || !strings.Contains(msg, "STARTTLS") {
		t.Fatalf("EHLO: %v %q, want STARTTLS offered", err, msg)
	}
	fmt.Fprintf(c, "STARTTLS\r\nMAIL FROM:<poster@example.org>\r\nRCPT TO:<news@lists.test>\r\nDATA\r\n")
	code, msg, _ := tp.ReadResponse(0)
	if code != 554 || !strings.HasPrefix(msg, "5.5.0") {
		t.Errorf("STARTTLS with commands after it: %d %s, want 554 5.5.0", code, msg)
	}
	if line, err := tp.ReadLine(); err == nil {
		t.Errorf("after the refusal got %q, want the connection closed", line)
	}
	c.Close()
	if !waitLog(p, "STARTTLS refused: commands pipelined after it") {
		t.Fatal("refusal not logged")
	}
	p.stop(t)
	if n.delivered() != 0 {
		t.Error("a post went through")
	}
}

// dialTLS opens a session, upgraded with STARTTLS, and returns it with
// the certificate the server showed.
func dialTLS(t *testing.T, addr string) (*smtp.Client, *x509.Certificate) {
	t.Helper()
	c := dialEHLO(t, addr, &tls.Config{InsecureSkipVerify: true})
	st, _ := c.TLSConnectionState()
	return c, st.PeerCertificates[0]
}

// dialEHLO opens a session, upgraded with STARTTLS unless tlsConfig is
// nil, says EHLO, and closes it when the test ends.
func dialEHLO(t *testing.T, addr string, tlsConfig *tls.Config) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	if tlsConfig != nil {
		c, err = smtp.DialStartTLS(addr, tlsConfig)
	} else {
		c, err = smtp.Dial(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("poster.example.org"); err != nil {
		t.Fatal(err)
	}
	return c
}

// With tls.required a clear-text MAIL is refused with 530 5.7.0, and
// the same after STARTTLS is taken.
func TestTLSRequired(t *testing.T) {
	_, p, _, _ := tlsServer(t, "required = true\n")
	c := dialEHLO(t, p.addr, nil)
	err := c.Mail("poster@example.org", nil)
	var se *smtp.SMTPError
	if !asSMTPError(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) {
		t.Fatalf("clear-text MAIL: %v, want 530 5.7.0", err)
	}
	tc, _ := dialTLS(t, p.addr)
	if err := tc.Mail("poster@example.org", nil); err != nil {
		t.Errorf("MAIL after STARTTLS: %v", err)
	}
}

// A certificate replaced on disk is served from the next handshake
// after the change is seen, without a restart; a broken one replacing
// it leaves the last good one in service.
func TestCertificateReplacedOnDisk(t *testing.T) {
	_, p, cert, key := tlsServer(t, "")
	// Each session is closed at once, so the stop below waits for none.
	if s, c := dialTLS(t, p.addr); s.Close() != nil || c.SerialNumber.Int64() != 1 {
		t.Fatalf("serial %v, want 1", c.SerialNumber)
	}
	writeCert(t, cert, key, 2)
	var serial *big.Int
	if !testutil.Poll(10*time.Second, 200*time.Millisecond, func() bool {
		s, c := dialTLS(t, p.addr)
		s.Close()
		serial = c.SerialNumber
		return serial.Int64() == 2
	}) {
		t.Fatalf("still serving serial %v 10s after the files changed", serial)
	}
	if err := os.WriteFile(cert, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the check interval
	if s, c := dialTLS(t, p.addr); s.Close() != nil || c.SerialNumber.Int64() != 2 {
		t.Errorf("after a broken replacement: serial %v, want the previous 2", c.SerialNumber)
	}
	if !waitLog(p, "still serving the previous one") {
		t.Fatal("the broken certificate was not logged")
	}
	p.stop(t)
}

// A broken certificate or key is a start-up error naming the file.
func TestBrokenCertificateAtStart(t *testing.T) {
	n := newFakeNet(t, testDomains(1), nil)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cert, key, 1)
	if err := os.WriteFile(key, []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := n.writeConfig(t, t.TempDir(), fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\n", cert, key))
	out, err := runBinary(t, "--config", cfg, "serve")
	if err == nil || !strings.Contains(out, key) {
		t.Errorf("serve with a broken key: %v\n%s\nwant an error naming %s", err, out, key)
	}
}

// A UTF-8 member receives a UTF-8 post from a UTF-8 poster over
// SMTPUTF8. At a server without SMTPUTF8 the post fails with 5.6.7, for
// a UTF-8 member and, since its header is UTF-8, for an ASCII one too;
// both failures are recorded against the members, and the DSN to the
// list's bounce address is read inside fanmail; an ASCII-only post sent
// with SMTPUTF8 reaches the ASCII member there all the same.
func TestUTF8MemberReceivesUTF8Post(t *testing.T) {
	n := newFakeNet(t, []string{"d00.test", "d01.test", "lists.test"}, func(domain string) fakenet.SinkOptions {
		return fakenet.SinkOptions{SMTPUTF8: domain != "d01.test"}
	})
	cfg := n.writeConfig(t, t.TempDir(), "")
	openList(t, cfg, "news@lists.test")
	fanmailCLI(t, cfg, "", "member", "add", "news@lists.test", "jörg@d00.test", "zoë@d01.test", "ascii@d00.test", "plain@d01.test")
	if out := fanmailCLI(t, cfg, "", "member", "ls", "news@lists.test"); !strings.Contains(out, "jörg@d00.test") {
		t.Fatalf("UTF-8 member not stored:\n%s", out)
	}
	p := startFanmail(t, cfg)

	post := func(from, msg string) {
		t.Helper()
		c := dialEHLO(t, p.addr, nil)
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			t.Fatal("SMTPUTF8 not advertised")
		}
		if err := c.Mail(from, &smtp.MailOptions{UTF8: true}); err != nil {
			t.Fatalf("MAIL FROM:<%s> SMTPUTF8: %v", from, err)
		}
		if err := c.Rcpt("news@lists.test", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, msg)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		c.Quit()
	}
	post("josé@example.org", "From: José <josé@example.org>\r\nSubject: Grüße aus Köln\r\nMessage-ID: <utf8-1@example.org>\r\n\r\nÄpfel und Birnen\r\n")
	n.waitDelivered(t, 2, 20*time.Second, p) // two at d00.test
	var got []string
	for _, d := range n.sinks["d00.test"].Deliveries() {
		got = append(got, d.Recipients...)
		if !strings.Contains(string(d.Data), "Subject: Grüße aus Köln") || !strings.Contains(string(d.Data), "with UTF8SMTP") {
			t.Errorf("delivered post lost its UTF-8 header or Received protocol:\n%s", d.Data)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"ascii@d00.test", "jörg@d00.test"}, got); diff != "" {
		t.Errorf("d00.test recipients (-want +got):\n%s", diff)
	}
	if n.sinks["d01.test"].RecipientsDelivered() != 0 {
		t.Errorf("d01.test, without SMTPUTF8, received the post that needs it")
	}
	mustLog(t, p, "rcpt=news-bounces@lists.test domain=lists.test relay=listmail", 20*time.Second)
	if got := len(n.sinks["lists.test"].Deliveries()); got != 0 {
		t.Errorf("%d messages went to the list domain's MX; its DSN is read inside fanmail", got)
	}
	for _, m := range []string{"zoë@d01.test", "plain@d01.test"} {
		// Recorded in a batch, a moment after delivery.
		n.waitCount(t, "recorded failures of "+m, func() int {
			return strings.Count(fanmailCLI(t, cfg, "", "member", "show", "news@lists.test", m), "failed 5.6.7")
		}, 1, 20*time.Second, p)
	}

	// ASCII through and through, though sent with SMTPUTF8: the ASCII
	// member at d01.test gets it; the UTF-8 one still cannot.
	post("poster@example.org", "From: poster@example.org\r\nSubject: plain\r\nMessage-ID: <utf8-2@example.org>\r\n\r\nÄpfel\r\n")
	n.waitCount(t, "ASCII post at d01.test", n.sinks["d01.test"].RecipientsDelivered, 1, 20*time.Second, p)
	if d := n.sinks["d01.test"].Deliveries()[0]; len(d.Recipients) != 1 || d.Recipients[0] != "plain@d01.test" {
		t.Errorf("d01.test got %v, want plain@d01.test", d.Recipients)
	}
}

// Mail to postmaster@ a list domain and to the bare <postmaster> (RFC
// 5321 §4.5.1), in clear text and over STARTTLS, reaches admin_address;
// abuse@ without abuse_address, and postmaster@ a domain without lists,
// are refused.
func TestPostmasterReachesAdmin(t *testing.T) {
	n := newFakeNet(t, testDomains(1), nil)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, cert, key, 1)
	cfg := n.writeConfig(t, t.TempDir(), fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\n", cert, key))
	cfg = strings.Replace(readFile(t, cfg), "hostname = ", "admin_address = \"admin@d00.test\"\nhostname = ", 1)
	path := filepath.Join(t.TempDir(), "fanmail.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	fanmailCLI(t, path, "", "list", "create", "news@lists.test")
	p := startFanmail(t, path)
	postTo(t, p.addr, "someone@example.org", "postmaster@lists.test", "Subject: to the postmaster\r\n\r\nhi\r\n")
	postTo(t, p.addr, "someone@example.org", "PostMaster@Lists.Test", "Subject: to the postmaster again\r\n\r\nhi\r\n")
	postTo(t, p.addr, "someone@example.org", "Postmaster", "Subject: to the bare postmaster\r\n\r\nhi\r\n")
	tc, _ := dialTLS(t, p.addr)
	if err := tc.Mail("someone@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := tc.Rcpt("postmaster", nil); err != nil {
		t.Fatalf("RCPT TO:<postmaster> over TLS: %v", err)
	}
	w, err := tc.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Subject: to the bare postmaster over TLS\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tc.Quit()
	for _, rcpt := range []string{"abuse@lists.test", "postmaster@elsewhere.test"} {
		c := mailFrom(t, p.addr, "poster.example.org", "someone@example.org")
		if err := c.Rcpt(rcpt, nil); err == nil {
			t.Errorf("RCPT %s accepted", rcpt)
		}
		c.Close()
	}
	n.waitDelivered(t, 4, 20*time.Second, p)
	for _, d := range n.sinks["d00.test"].Deliveries() {
		if len(d.Recipients) != 1 || d.Recipients[0] != "admin@d00.test" || d.From != "MAILER-DAEMON@fanmail.test" {
			t.Errorf("delivery from %s to %v, want MAILER-DAEMON@fanmail.test (no backscatter) to admin@d00.test", d.From, d.Recipients)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func asSMTPError(err error, se **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	*se = e
	return ok
}
