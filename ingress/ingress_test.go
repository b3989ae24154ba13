package ingress

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/internal/testutil"
	"fanmail/queuegroups"
)

// noDelivery is never called: the tests below leave the runners stopped
// so the queue's contents can be inspected.
type noDelivery struct{}

func (noDelivery) Deliver(context.Context, envelope.Request) []envelope.Result {
	panic("runners were not started")
}

type fixture struct {
	srv      *Server
	addr     string
	queue    *queuegroups.Queue
	modes    *modeRecorder
	spoolDir string
}

// start runs a real server on loopback with a real list store, expander
// and queue; only the runners are left off.
func start(t *testing.T, maxSize int64) *fixture {
	t.Helper()
	return startWith(t, Config{MaxMessageSize: maxSize})
}

// startWith is start with the caller's Config; the listen address,
// hostname and timeouts are filled in.
func startWith(t testing.TB, cfg Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	store := testutil.ListStore(t, dir, "announce@lists.example.org", "alice@example.org",
		"bob@example.com", "carol@example.net", "dave@example.com")
	// These tests are about the session and the queue, and post as
	// poster@example.org, no member: the list takes posts from anyone.
	// The posting policy has its own tests (policy_test.go).
	if err := store.SetSettings(context.Background(), "announce@lists.example.org", [][2]string{{"posting", "open"}}); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "queue")
	q, err := queuegroups.Open(spoolConfig(spool), noDelivery{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Hostname = "127.0.0.1:0", "fanmail.test"
	cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 5*time.Second
	modes := &modeRecorder{Queue: q}
	router, err := expander.NewRouter(routing())
	if err != nil {
		t.Fatal(err)
	}
	exp := expander.New(store, "fanmail.test", router).WithRoles(expander.Roles{Postmaster: "admin@example.org",
		ListDomains: func(context.Context) ([]string, error) { return []string{"lists.example.org"}, nil }})
	srv := New(cfg, exp, modes, queuegroups.NewIDSource())
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		q.Close(ctx)
	})
	return &fixture{srv: srv, addr: srv.Addr().String(), queue: q, modes: modes, spoolDir: spool}
}

// routing cuts envelopes of 2 for the default group.
func routing() expander.RouterConfig {
	return expander.RouterConfig{RecipientsPerEnvelope: map[string]int{queuegroups.DefaultGroup: 2}}
}

// spoolConfig is a spool in dir with the default and control groups.
func spoolConfig(dir string) queuegroups.Config {
	return queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{dir}},
			{Name: queuegroups.ControlGroup, Dirs: []string{dir + "-control"}},
		},
		RetryMin: time.Minute, RetryMax: time.Hour, QueueReturn: time.Hour,
	}
}

func dial(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	return c
}

// postData sends msg to the list in one transaction and returns the
// first error, of whichever command.
func postData(c *smtp.Client, msg string) error {
	if err := c.Mail("poster@example.org", nil); err != nil {
		return err
	}
	if err := c.Rcpt("announce@lists.example.org", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write([]byte(msg))
	return w.Close()
}

// wantReply checks that err is the SMTP reply code with enhanced status.
func wantReply(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want %d %v", what, err, code, enh)
	}
	if se.Code != code || se.EnhancedCode != enh {
		t.Errorf("%s: got %d %v %q, want %d %v", what, se.Code, se.EnhancedCode, se.Message, code, enh)
	}
}

const post = "From: poster@example.org\r\nTo: announce@lists.example.org\r\nSubject: hello\r\n\r\nFirst post.\r\n"

func TestEHLOExtensions(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	c := dial(t, f.addr)
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO does not advertise %s", ext)
		}
	}
	if ok, v := c.Extension("SIZE"); !ok || v != "1048576" {
		t.Errorf("SIZE = %v %q, want 1048576", ok, v)
	}
}

func TestAcceptedPostIsQueuedWithID(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	c := dial(t, f.addr)
	if err := c.Mail("poster@example.org", nil); err != nil {
		t.Fatal(err)
	}
	// Lists are found case-insensitively.
	if err := c.Rcpt("ANNOUNCE@Lists.Example.ORG", nil); err != nil {
		t.Fatalf("RCPT to a list: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(post)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	id, ok := strings.CutPrefix(resp.StatusText, "2.0.0 OK queued as ")
	if !ok || len(id) != 16 {
		t.Fatalf("250 reply %q does not carry a queue ID", resp.StatusText)
	}
	// r=2 over bob+dave@example.com and carol@example.net: two envelopes.
	s := f.queue.Stats()
	if s.Messages != 1 || s.Recipients != 3 || s.Envelopes != 2 {
		t.Errorf("queue after 250: %+v, want 1 message, 2 envelopes, 3 recipients", s)
	}
}

func TestRejections(t *testing.T) {
	t.Parallel()
	f := start(t, 1024)
	tests := []struct {
		name string
		run  func(c *smtp.Client) error
		code int
		enh  smtp.EnhancedCode
	}{
		{"unknown local part", func(c *smtp.Client) error {
			c.Mail("poster@example.org", nil)
			return c.Rcpt("nosuchlist@lists.example.org", nil)
		}, 550, smtp.EnhancedCode{5, 1, 1}},
		{"relay attempt", func(c *smtp.Client) error {
			c.Mail("poster@example.org", nil)
			return c.Rcpt("someone@elsewhere.example", nil)
		}, 550, smtp.EnhancedCode{5, 7, 1}},
		{"malformed recipient", func(c *smtp.Client) error {
			c.Mail("poster@example.org", nil)
			return c.Rcpt("a..b@lists.example.org", nil)
		}, 501, smtp.EnhancedCode{5, 1, 3}},
		{"malformed sender", func(c *smtp.Client) error {
			return c.Mail("bad@@example.org", nil)
		}, 553, smtp.EnhancedCode{5, 1, 7}},
		{"declared size over the limit", func(c *smtp.Client) error {
			return c.Mail("poster@example.org", &smtp.MailOptions{Size: 4096})
		}, 552, smtp.EnhancedCode{5, 3, 4}},
		{"message over the limit", func(c *smtp.Client) error {
			return postData(c, post+strings.Repeat(strings.Repeat("x", 98)+"\r\n", 20))
		}, 552, smtp.EnhancedCode{5, 3, 4}},
		{"line too long", func(c *smtp.Client) error {
			return postData(c, post+strings.Repeat("x", 2100)+"\r\n")
		}, 554, smtp.EnhancedCode{5, 6, 0}},
		{"post looping back to its list", func(c *smtp.Client) error {
			return postData(c, "List-Id: Announcements <announce.lists.example.org>\r\n"+post)
		}, 554, smtp.EnhancedCode{5, 4, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantReply(t, tt.name, tt.run(dial(t, f.addr)), tt.code, tt.enh)
		})
	}
	if s := f.queue.Stats(); s.Messages != 0 {
		t.Errorf("rejected posts left %d messages in the queue", s.Messages)
	}
}

// TestDeletedList checks that a list deleted while the server runs stops
// taking mail at once.
func TestDeletedList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := testutil.ListStore(t, dir, "gone@example.org", "")
	ctx := context.Background()
	exp := expander.New(store, "fanmail.test", nil)
	if _, err := exp.Lookup(ctx, "gone@example.org"); err != nil {
		t.Fatalf("lookup before delete: %v", err)
	}
	if err := store.DeleteList(ctx, "gone@example.org"); err != nil {
		t.Fatal(err)
	}
	// The expander re-reads the store's version at most every 50ms.
	var err error
	if !testutil.Poll(5*time.Second, 10*time.Millisecond, func() bool {
		_, err = exp.Lookup(ctx, "gone@example.org")
		return errors.Is(err, expander.ErrUnknownRecipient)
	}) {
		t.Fatalf("lookup 5s after delete: %v, want ErrUnknownRecipient", err)
	}
}

// TestAcceptedPostSurvivesRestart checks that the 250 means durable: the
// message is replayed from the spool by a fresh queue.
func TestAcceptedPostSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	c := dial(t, f.addr)
	if err := c.SendMail("poster@example.org", []string{"announce@lists.example.org"}, strings.NewReader(post)); err != nil {
		t.Fatal(err)
	}
	// A read-only replay of the directory sees what a restart would.
	q, err := queuegroups.OpenReadOnly(spoolConfig(f.spoolDir))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	if s := q.Stats(); s.Messages != 1 || s.Recipients != 3 {
		t.Errorf("replayed queue: %+v, want 1 message with 3 recipients", s)
	}
}

// TestOwnerAddresses: owner-LIST reaches the list's owner from the
// list's bounce address, never the poster's; what it gets from the null
// sender (a bounce), and whatever goes to LIST-request, is queued for
// the list's own address in the control group, where listmail reads it
// (from its sender, who is answered).
func TestOwnerAddresses(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	for _, tt := range []struct{ rcpt, from, sender, to, group string }{
		{"owner-announce@lists.example.org", "", "", "owner-announce@lists.example.org", "control"},
		{"Announce-Request@Lists.Example.org", "", "", "announce-request@lists.example.org", "control"},
		{"owner-announce@lists.example.org", "poster@example.org", "announce-bounces@lists.example.org", "alice@example.org", "default"},
		{"Announce-Request@Lists.Example.org", "poster@example.org", "poster@example.org", "announce-request@lists.example.org", "control"},
		{"announce-bounces@lists.example.org", "", "", "announce-bounces@lists.example.org", "control"},
	} {
		rcpt := tt.rcpt
		c := dial(t, f.addr)
		if err := c.Mail(tt.from, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT %s: %v", rcpt, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: bounce\r\n\r\nreport\r\n"))
		resp, err := w.CloseWithResponse()
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(resp.StatusText, "2.0.0 OK queued as ")
		md, err := f.queue.Show(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Envelopes) != 1 || md.Envelopes[0].Sender != tt.sender || len(md.Envelopes[0].Recipients) != 1 ||
			md.Envelopes[0].Recipients[0].Address != tt.to || md.Envelopes[0].Group != tt.group {
			t.Errorf("mail to %s from <%s> queued as %+v, want one envelope <%s> -> %s in group %s", rcpt, tt.from, md, tt.sender, tt.to, tt.group)
		}
	}
	c := dial(t, f.addr)
	c.Mail("", nil)
	wantReply(t, "owner of a missing list", c.Rcpt("owner-nosuch@lists.example.org", nil), 550, smtp.EnhancedCode{5, 1, 1})
}

// TestHopLimit: a post that has passed more than 50 servers is a loop.
func TestHopLimit(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	send := func(hops int) error {
		return postData(dial(t, f.addr),
			strings.Repeat("Received: from a.example by b.example; Wed, 25 Nov 2026 06:00:00 +0000\r\n", hops)+post)
	}
	if err := send(50); err != nil {
		t.Errorf("50 hops: %v, want accepted", err)
	}
	wantReply(t, "51 hops", send(51), 554, smtp.EnhancedCode{5, 4, 6})
}

// TestSpooledPosts: a post far bigger than a session's memory part is
// queued whole, and one whose header alone is over the expander's limit
// is refused with 552 5.3.4 and leaves nothing in the queue.
func TestSpooledPosts(t *testing.T) {
	t.Parallel()
	f := start(t, 8<<20)
	line := strings.Repeat("y", 998) + "\r\n"
	big := post + strings.Repeat(line, 2000) // about 2 MB
	if err := postData(dial(t, f.addr), big); err != nil {
		t.Fatalf("2 MB post: %v", err)
	}
	if s := f.queue.Stats(); s.Messages != 1 {
		t.Fatalf("queue after the big post: %+v", s)
	}
	dirs := f.queue.Summary(0, 10)
	if len(dirs[0].List) != 1 {
		t.Fatalf("default group lists %+v, want the one post", dirs[0].List)
	}
	d, err := f.queue.Show(dirs[0].List[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size != int64(len(big)) {
		t.Errorf("queued %d bytes, want the whole %d byte post", d.Size, len(big))
	}
	header := "X-Filler: " + strings.Repeat("z", 900) + "\r\n"
	huge := strings.Repeat(header, expander.MaxHeaderSize/len(header)+1) + post
	wantReply(t, "header over the limit", postData(dial(t, f.addr), huge), 552, smtp.EnhancedCode{5, 3, 4})
	if s := f.queue.Stats(); s.Messages != 1 {
		t.Errorf("the refused post changed the queue: %+v", s)
	}
}
