package listmail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/expander"
	"fanmail/internal/testutil"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
)

// queued is the queue of a test: it keeps what listmail sends. The
// spool's own behaviour is tested in queuegroups and end to end.
type queued struct {
	mu   sync.Mutex
	msgs []*queuegroups.Message
}

func (q *queued) Enqueue(_ context.Context, m *queuegroups.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

// sent is one message listmail sent: its envelope and content.
type sent struct {
	from, to string
	data     []byte
}

func (q *queued) take() []sent {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []sent
	for _, m := range q.msgs {
		data, _ := io.ReadAll(envelope.Reader(m.Body))
		for _, p := range m.Parts {
			for _, e := range p.Envelopes {
				for _, r := range e.Recipients {
					out = append(out, sent{from: e.Sender, to: r, data: append(append([]byte(nil), p.Prefix...), data...)})
				}
			}
		}
	}
	q.msgs = nil
	return out
}

// passed is the deliverer behind listmail in a test: it answers each
// recipient as its reply table says (250 by default) and keeps what it
// was given.
type passed struct {
	mu      sync.Mutex
	replies map[string]envelope.Reply
	got     []envelope.Request
}

func (p *passed) Deliver(_ context.Context, req envelope.Request) []envelope.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, req)
	out := make([]envelope.Result, len(req.Recipients))
	for i, r := range req.Recipients {
		rep, ok := p.replies[r]
		if !ok {
			rep = envelope.Reply{Code: 250, Enhanced: "2.0.0", Text: "ok"}
		}
		st := envelope.Delivered
		switch {
		case rep.Code >= 500 || rep.Code == 0 && strings.HasPrefix(rep.Enhanced, "5."):
			st = envelope.Failed
		case rep.Code >= 400 || rep.Code == 0 && strings.HasPrefix(rep.Enhanced, "4."):
			st = envelope.Deferred
		}
		out[i] = envelope.Result{Recipient: r, Status: st, Reply: rep}
	}
	return out
}

type fixture struct {
	store *lists.Store
	q     *queued
	next  *passed
	d     queuegroups.Deliverer
	svc   *Service
	now   time.Time
}

func newFixture(t testing.TB, list, owner string) *fixture {
	t.Helper()
	store, err := lists.Open(filepath.Join(t.TempDir(), "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateList(context.Background(), list, owner); err != nil {
		t.Fatal(err)
	}
	exp := expander.New(store, "fanmail.test", nil).WithRoles(expander.Roles{ListDomains: func(ctx context.Context) ([]string, error) {
		all, err := store.Lists(ctx)
		var out []string
		for _, l := range all {
			out = append(out, l.Address[strings.LastIndexByte(l.Address, '@')+1:])
		}
		return out, err
	}})
	f := &fixture{store: store, q: &queued{}, next: &passed{replies: map[string]envelope.Reply{}},
		now: time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)}
	f.svc = New(Config{Store: store, Expander: exp, Queue: f.q, Hostname: "fanmail.test", Now: func() time.Time { return f.now }})
	f.d = f.svc.Deliverer(f.next)
	return f
}

// addMembers adds addrs to list, failing the test on an error.
func (f *fixture) addMembers(t *testing.T, list string, addrs ...string) {
	t.Helper()
	if _, err := f.store.AddMembers(context.Background(), list, addrs); err != nil {
		t.Fatal(err)
	}
}

// setSettings sets list's settings kv, failing the test on an error.
func (f *fixture) setSettings(t *testing.T, list string, kv [][2]string) {
	t.Helper()
	if err := f.store.SetSettings(context.Background(), list, kv); err != nil {
		t.Fatal(err)
	}
}

// deliver hands msg from sender for rcpts to listmail's deliverer.
func (f *fixture) deliver(t *testing.T, sender string, msg string, rcpts ...string) []envelope.Result {
	t.Helper()
	req := envelope.Request{QueueID: "Q", Envelope: envelope.Envelope{Sender: sender, Domain: domainOf(rcpts[0]), Recipients: rcpts},
		Size: int64(len(msg)), Open: func() io.Reader { return strings.NewReader(msg) }}
	return f.d.Deliver(context.Background(), req)
}

func msg(from, subject, body string) string {
	return "From: " + from + "\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
}

// TestModeratedSubscribeByMail: on a moderated list the address
// confirms, the moderators are asked, one approves, the member is
// welcomed; the recipients that are no list address pass on to the
// next deliverer with their Progress indexes mapped.
func TestModeratedSubscribeByMail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "dev@lists.example.org", "owner@example.org")
	f.setSettings(t, "dev@lists.example.org", [][2]string{{"subscribe_policy", "moderate"}})
	if _, err := f.store.AddModerators(ctx, "dev@lists.example.org", []string{"mod@example.org"}); err != nil {
		t.Fatal(err)
	}
	// One envelope with a list address and an ordinary recipient of the
	// same domain.
	var progress []int
	req := envelope.Request{QueueID: "Q", Envelope: envelope.Envelope{Sender: "bob@x.example", Domain: "lists.example.org",
		Recipients: []string{"dev-request@lists.example.org", "someone@lists.example.org"}},
		Open:     func() io.Reader { return strings.NewReader(msg("Bob <bob@x.example>", "Re: subscribe", "")) },
		Progress: func(idx []int, _ []envelope.Result) { progress = append(progress, idx...) }}
	req.Size = int64(len(msg("Bob <bob@x.example>", "Re: subscribe", "")))
	res := f.d.Deliver(ctx, req)
	if res[0].Status != envelope.Delivered || res[0].Relay != "listmail" || res[1].Status != envelope.Delivered || res[1].Relay == "listmail" {
		t.Fatalf("results %+v", res)
	}
	if len(f.next.got) != 1 || len(f.next.got[0].Recipients) != 1 || f.next.got[0].Recipients[0] != "someone@lists.example.org" {
		t.Fatalf("passed on: %+v", f.next.got)
	}
	f.next.got[0].Progress([]int{0}, res[1:])
	if diff := cmp.Diff([]int{1}, progress); diff != "" {
		t.Errorf("progress indexes (-want +got):\n%s", diff)
	}
	out := f.q.take()
	if len(out) != 1 || out[0].to != "bob@x.example" || out[0].from != "dev-bounces@lists.example.org" {
		t.Fatalf("sent %+v, want one confirmation to bob from the bounce address", out)
	}
	confirm := testutil.ReplyTo(t, out[0].data)
	a := listaddr.Parse(confirm)[1]
	if a.Role != listaddr.Confirm || len(a.Token) != lists.TokenLen {
		t.Fatalf("Reply-To %s is no confirmation address", confirm)
	}
	if r := f.deliver(t, "bob@x.example", msg("bob@x.example", "Re: Confirm", "yes"), confirm); r[0].Status != envelope.Delivered {
		t.Fatalf("confirm: %+v", r)
	}
	out = f.q.take()
	if len(out) != 2 || out[0].to != "mod@example.org" || out[1].to != "bob@x.example" {
		t.Fatalf("after confirming, sent to %+v; want the moderator asked and bob told", out)
	}
	if ok, _ := f.store.IsMember(ctx, "dev@lists.example.org", "bob@x.example"); ok {
		t.Fatal("member before approval")
	}
	approve := testutil.ReplyTo(t, out[0].data)
	f.deliver(t, "mod@example.org", msg("mod@example.org", "ok", ""), approve)
	out = f.q.take()
	if len(out) != 1 || out[0].to != "bob@x.example" || !bytes.Contains(out[0].data, []byte("Welcome")) {
		t.Fatalf("after approval, sent %+v; want bob's welcome", out)
	}
	if ok, _ := f.store.IsMember(ctx, "dev@lists.example.org", "bob@x.example"); !ok {
		t.Fatal("not a member after approval")
	}
}

// TestBounceReports: a report mailed to the bounce address is scored
// for each member it names (hard 1, soft 0.5), disabling at the
// threshold with a notice to the owner and the first warning; warnings
// follow with time and the member is removed after the last. A report
// naming no member goes on to the owner from the null sender.
func TestBounceReports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "dev@lists.example.org", "owner@example.org")
	f.addMembers(t, "dev@lists.example.org", "erin@example.com", "frank@example.net")
	f.setSettings(t, "dev@lists.example.org", [][2]string{{"bounce_score_threshold", "1"},
		{"bounce_you_are_disabled_warnings", "2"}, {"bounce_you_are_disabled_warnings_interval", "1d"}})
	report, err := os.ReadFile("../testdata/bounces/03-postfix-dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	if r := f.deliver(t, "", string(report), "dev-bounces@lists.example.org"); r[0].Status != envelope.Delivered {
		t.Fatalf("bounce: %+v", r)
	}
	erin, err := f.store.MemberBounceInfo(ctx, "dev@lists.example.org", "erin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	frank, _ := f.store.MemberBounceInfo(ctx, "dev@lists.example.org", "frank@example.net")
	if erin.State.Disabled.IsZero() || erin.State.WarningsSent != 1 || frank.State.Score != 0.5 || !frank.State.Disabled.IsZero() {
		t.Fatalf("erin %+v, frank %+v; want erin disabled and warned, frank at 0.5", erin.State, frank.State)
	}
	if len(erin.Events) != 1 || erin.Events[0].Source != "dsn" || !strings.Contains(erin.Events[0].Evidence, "User unknown") {
		t.Errorf("erin's evidence: %+v", erin.Events)
	}
	var to []string
	for _, s := range f.q.take() {
		to = append(to, s.to)
	}
	if diff := cmp.Diff([]string{"owner@example.org", "erin@example.com"}, to); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	// Tick: nothing before the interval; the second warning after it;
	// removal one interval after that.
	for _, step := range []struct {
		after  time.Duration
		to     []string
		member bool
	}{
		{time.Hour, nil, true},
		{25 * time.Hour, []string{"erin@example.com"}, true},
		{49 * time.Hour, []string{"owner@example.org"}, false},
	} {
		f.now = time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC).Add(step.after)
		if err := f.svc.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range f.q.take() {
			got = append(got, s.to)
		}
		if diff := cmp.Diff(step.to, got); diff != "" {
			t.Errorf("after %v: sent (-want +got):\n%s", step.after, diff)
		}
		if ok, _ := f.store.IsMember(ctx, "dev@lists.example.org", "erin@example.com"); ok != step.member {
			t.Errorf("after %v: member %v, want %v", step.after, ok, step.member)
		}
	}

	// A vacation reply names nobody: it goes to the owner, from <>.
	vacation, err := os.ReadFile("../testdata/bounces/22-autoreply-vacation.eml")
	if err != nil {
		t.Fatal(err)
	}
	f.deliver(t, "someone@example.com", string(vacation), "dev-bounces@lists.example.org")
	out := f.q.take()
	if len(out) != 1 || out[0].to != "owner@example.org" || out[0].from != "" {
		t.Errorf("an unmatched bounce went to %+v; want the owner from <>", out)
	}
}

// TestDelivererRecordsReplies: a 5xx reply to a list's mail counts
// against the member; a 4xx, a reply to other mail and a 5xx for a
// non-member do not.
func TestDelivererRecordsReplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "dev@lists.example.org", "")
	f.addMembers(t, "dev@lists.example.org", "a@x.example", "b@x.example")
	f.next.replies["a@x.example"] = envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown user", Host: "mx.x.example"}
	f.next.replies["b@x.example"] = envelope.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full"}
	f.next.replies["c@x.example"] = envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown user"}
	f.deliver(t, "dev-bounces@lists.example.org", "Subject: post\r\n\r\nhi\r\n", "a@x.example", "b@x.example", "c@x.example")
	// A failure delivery decided itself: permanent (a null MX) counts,
	// temporary (no answer) does not.
	f.addMembers(t, "dev@lists.example.org", "n@nullmx.example", "t@down.example")
	f.next.replies["n@nullmx.example"] = envelope.Reply{Code: 0, Enhanced: "5.1.10", Text: "nullmx.example accepts no mail (null MX)"}
	f.next.replies["t@down.example"] = envelope.Reply{Code: 0, Enhanced: "4.4.1", Text: "connection refused"}
	f.deliver(t, "dev-bounces@lists.example.org", "Subject: post\r\n\r\nhi\r\n", "n@nullmx.example")
	f.deliver(t, "dev-bounces@lists.example.org", "Subject: post\r\n\r\nhi\r\n", "t@down.example")
	f.deliver(t, "someone@else.example", "Subject: other\r\n\r\nhi\r\n", "a@x.example")
	ms, err := f.store.BouncingMembers(ctx, "dev@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, fmt.Sprintf("%s %g", m.Address, m.State.Score))
	}
	if diff := cmp.Diff([]string{"a@x.example 1", "n@nullmx.example 1"}, got); diff != "" {
		t.Fatalf("bouncing members (-want +got):\n%s", diff)
	}
	info, _ := f.store.MemberBounceInfo(ctx, "dev@lists.example.org", "a@x.example")
	if len(info.Events) != 1 || info.Events[0].Source != "smtp" || info.Events[0].Diagnostic != "550 5.1.1 unknown user" || info.Events[0].RemoteMTA != "mx.x.example" {
		t.Errorf("evidence %+v", info.Events)
	}
}

func TestCommandWord(t *testing.T) {
	for in, want := range map[string]string{
		"subscribe": "subscribe", "Re: AW: Subscribe me please": "subscribe", "UNSUBSCRIBE": "unsubscribe",
		"help.": "help", "  help": "help", "subscriber list": "", "": "", "Re:": "", "please subscribe": "",
	} {
		if got := commandWord(in); got != want {
			t.Errorf("commandWord(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAutomatic(t *testing.T) {
	for _, tt := range []struct {
		sender, header string
		auto           bool
	}{
		{"a@x", "", false},
		{"", "", true},
		{"a@x", "Auto-Submitted: no\r\n", false},
		{"a@x", "Auto-Submitted: auto-replied\r\n", true},
		{"a@x", "Precedence: bulk\r\n", true},
		{"a@x", "Precedence: first-class\r\n", false},
		{"a@x", "List-Id: <l.example>\r\n", true},
		{"a@x", "X-Auto-Response-Suppress: All\r\n", true},
	} {
		p, _ := readMessage(strings.NewReader(tt.header + "From: a@x.example\r\nSubject: help\r\n\r\nhelp\r\n"))
		if got := automatic(tt.sender, p.header) != ""; got != tt.auto {
			t.Errorf("automatic(%q, %q) = %v, want %v", tt.sender, tt.header, got, tt.auto)
		}
	}
}

// TestFirstLine: the command in a body is found in the first text part.
func TestFirstLine(t *testing.T) {
	m := "From: A <a@x.example>\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>help</p>\r\n--b\r\nContent-Type: text/plain\r\n\r\n\r\n  unsubscribe\r\nthanks\r\n--b--\r\n"
	p, _ := readMessage(strings.NewReader(m))
	if p.firstLine != "unsubscribe" || p.from != "a@x.example" || p.subject != "hi" {
		t.Errorf("parsed %+v", p)
	}
}

// TestStreamBody: reads in order continue one reader; a read elsewhere
// starts again.
func TestStreamBody(t *testing.T) {
	data := strings.Repeat("0123456789", 1000)
	opens := 0
	b := newStreamBody(func() io.Reader { opens++; return strings.NewReader(data) }, int64(len(data)))
	got, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil || string(got) != data || opens != 1 {
		t.Fatalf("read %d bytes, %v, %d opens", len(got), err, opens)
	}
	p := make([]byte, 5)
	if n, err := b.ReadAt(p, 12); n != 5 || err != nil || string(p) != "23456" {
		t.Errorf("ReadAt(12) = %d, %v, %q", n, err, p)
	}
	if n, err := b.ReadAt(p, int64(len(data))-2); n != 2 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v", n, err)
	}
}

// TestRecorderBatches: while Run runs, the 5xx replies of a fan-out go
// to the recorder, and what waits when Run stops is recorded before it
// returns.
func TestRecorderBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "dev@lists.example.org", "")
	f.svc.cfg.TickEvery = time.Hour
	var members []string
	for d := range 5 {
		for i := range 20 {
			m := fmt.Sprintf("m%02d@d%d.example", i, d)
			members = append(members, m)
			f.next.replies[m] = envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown user"}
		}
	}
	f.addMembers(t, "dev@lists.example.org", members...)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.svc.Run(runCtx)
	}()
	for !f.svc.recording.Load() {
		time.Sleep(time.Millisecond)
	}
	for d := range 5 {
		f.deliver(t, "dev-bounces@lists.example.org", "Subject: post\r\n\r\nhi\r\n", members[d*20:(d+1)*20]...)
	}
	cancel()
	<-done
	ms, err := f.store.BouncingMembers(ctx, "dev@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(members) {
		t.Fatalf("%d members recorded, want %d", len(ms), len(members))
	}
}

// TestReplyToWarningEnables: a disabled member's warning carries a
// confirmation address; a reply to it enables delivery again.
func TestReplyToWarningEnables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "dev@lists.example.org", "owner@example.org")
	f.addMembers(t, "dev@lists.example.org", "erin@x.example")
	f.setSettings(t, "dev@lists.example.org", [][2]string{{"bounce_score_threshold", "1"}})
	f.next.replies["erin@x.example"] = envelope.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
	f.deliver(t, "dev-bounces@lists.example.org", "Subject: post\r\n\r\nhi\r\n", "erin@x.example")
	var warning sent
	for _, s := range f.q.take() {
		if s.to == "erin@x.example" {
			warning = s
		}
	}
	if warning.data == nil {
		t.Fatal("no warning to the disabled member")
	}
	if dis, _ := f.store.DisabledMembers(ctx); len(dis) != 1 {
		t.Fatalf("disabled members %+v, want erin", dis)
	}
	f.deliver(t, "erin@x.example", msg("erin@x.example", "Re: Your delivery", "fixed it"), testutil.ReplyTo(t, warning.data))
	if dis, _ := f.store.DisabledMembers(ctx); len(dis) != 0 {
		t.Errorf("still disabled after the reply: %+v", dis)
	}
	out := f.q.take()
	if len(out) != 1 || out[0].to != "erin@x.example" || !bytes.Contains(out[0].data, []byte("is enabled again")) {
		t.Errorf("answer to the reply: %+v", out)
	}
}
