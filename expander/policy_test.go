package expander

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"fanmail/dmarc"
	"fanmail/envelope"
	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
	"fanmail/listaddr"
	"fanmail/lists"
	"fanmail/queuegroups"
	"fanmail/resolver"
)

const (
	polList   = "l@lists.example.org"
	member    = "member@example.net"
	moderator = "mod@example.net"
	outsider  = "outsider@example.com"
)

// policyFixture is an expander over a real store holding polList (one
// member, one moderator who is no member) and a real DNS server for the
// DMARC lookups.
func policyFixture(t *testing.T) (*Expander, *lists.Store, *fakenet.DNS) {
	t.Helper()
	store := testutil.ListStore(t, t.TempDir(), polList, "owner@example.org", member)
	if _, err := store.AddModerators(context.Background(), polList, []string{moderator}); err != nil {
		t.Fatal(err)
	}
	d, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.AddRR(`_dmarc.reject.example. 300 IN TXT "v=DMARC1; p=reject"`); err != nil {
		t.Fatal(err)
	}
	d.SetRcode("_dmarc.broken.example", dns.RcodeServerFailure)
	res, err := resolver.New(resolver.Config{Servers: []string{d.Addr()}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	x := New(store, "fanmail.test", nil).WithDMARC(dmarc.New(res))
	return x, store, d
}

func setPolicy(t *testing.T, store *lists.Store, kv ...string) {
	t.Helper()
	var pairs [][2]string
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		pairs = append(pairs, [2]string{k, v})
	}
	if err := store.SetSettings(context.Background(), polList, pairs); err != nil {
		t.Fatal(err)
	}
}

func postFrom(sender, from string) Post {
	return Post{ID: "Q" + strings.ReplaceAll(sender, "@", "-"), Received: time.Now(), Sender: sender, Helo: "client.test",
		RemoteAddr: "192.0.2.1", Lists: []string{polList},
		Body: envelope.Bytes("From: " + from + "\r\nSubject: policy\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n")}
}

// TestPostingPolicy runs every posting policy with every non-member
// action against a member, a moderator and an outsider.
func TestPostingPolicy(t *testing.T) {
	t.Parallel()
	type want map[string]string // poster → distribute, hold, reject, discard
	tests := []struct {
		posting string
		action  string
		want    want
	}{
		{"open", "hold", want{member: "distribute", moderator: "distribute", outsider: "distribute"}},
		{"open", "reject", want{member: "distribute", moderator: "distribute", outsider: "distribute"}},
		{"open", "discard", want{member: "distribute", moderator: "distribute", outsider: "distribute"}},
		{"members", "hold", want{member: "distribute", moderator: "hold", outsider: "hold"}},
		{"members", "reject", want{member: "distribute", moderator: "reject", outsider: "reject"}},
		{"members", "discard", want{member: "distribute", moderator: "discard", outsider: "discard"}},
		{"moderated", "hold", want{member: "hold", moderator: "hold", outsider: "hold"}},
		{"moderated", "reject", want{member: "hold", moderator: "hold", outsider: "hold"}},
		{"moderated", "discard", want{member: "hold", moderator: "hold", outsider: "hold"}},
		{"announce", "hold", want{member: "hold", moderator: "distribute", outsider: "hold"}},
		{"announce", "reject", want{member: "reject", moderator: "distribute", outsider: "reject"}},
		{"announce", "discard", want{member: "discard", moderator: "distribute", outsider: "discard"}},
	}
	// The reason a moderator is given for a held post, and a poster for a
	// rejected one, per posting policy.
	reasons := map[string]map[string]string{
		"members": {
			"hold":   "the sender is not a member",
			"reject": "Only members of " + polList + " may post to it; post from your member address, or subscribe by writing to " + listaddr.Of(polList, listaddr.Request, ""),
		},
		"moderated": {"hold": "the list is moderated: every post waits for a moderator"},
		"announce": {
			"hold":   "the sender is not a moderator, and only moderators post to this announce list",
			"reject": "Only the moderators of " + polList + " may post to it; write to " + listaddr.Of(polList, listaddr.Owner, "") + " to reach its owner",
		},
	}
	for _, tt := range tests {
		t.Run(tt.posting+"/"+tt.action, func(t *testing.T) {
			t.Parallel()
			x, store, _ := policyFixture(t)
			setPolicy(t, store, "posting="+tt.posting, "nonmember_action="+tt.action)
			for _, poster := range []string{member, moderator, outsider} {
				// The envelope sender counts, and so does the From:.
				for _, p := range []Post{postFrom(poster, "someone@else.example"), postFrom("bounce@else.example", poster)} {
					got, detail := outcome(t, x, store, p)
					if got != tt.want[poster] {
						t.Errorf("post from %s (From: %s): %s (%s), want %s", p.Sender, poster, got, detail, tt.want[poster])
					}
					if want, ok := reasons[tt.posting][got]; ok && detail != want {
						t.Errorf("post from %s (From: %s): %s with reason %q, want %q", p.Sender, poster, got, detail, want)
					}
				}
			}
		})
	}
}

// outcome expands p and says what became of it: distribute, hold,
// reject or discard, with a detail for the error message.
func outcome(t *testing.T, x *Expander, store *lists.Store, p Post) (string, string) {
	t.Helper()
	exp, err := x.Expand(context.Background(), p)
	var pe *PolicyError
	switch {
	case errors.As(err, &pe):
		if !strings.Contains(pe.Reason, "may post to it;") {
			t.Errorf("reject reason %q does not say what to do", pe.Reason)
		}
		return "reject", pe.Reason
	case err != nil:
		t.Fatal(err)
	case recipients(t, exp.Message) == 1 && len(exp.Stored) == 0:
		return "distribute", ""
	case len(exp.Stored) == 1 && recipients(t, exp.Message) == 0:
		post, err := store.GetPost(context.Background(), exp.Stored[0])
		if err != nil || post.State != lists.PostHeld {
			t.Fatalf("stored post %+v, %v; want held", post, err)
		}
		return "hold", post.Reason
	case len(exp.Stored) == 0 && recipients(t, exp.Message) == 0:
		return "discard", fmt.Sprint(exp.Notes)
	}
	return "?", fmt.Sprintf("%+v", exp)
}

// TestModeratorCommands: a token is checked at RCPT (Lookup) and used
// at DATA (Expand); a forged one, and one spent on the other action, are
// refused with a reason; a repeat changes nothing.
func TestModeratorCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x, store, _ := policyFixture(t)
	exp, err := x.Expand(ctx, postFrom(outsider, outsider))
	if err != nil || len(exp.Stored) != 1 {
		t.Fatalf("post from an outsider: %+v, %v; want it held", exp, err)
	}
	id := exp.Stored[0]
	tokens, err := store.IssueModerationTokens(ctx, id, []string{moderator})
	if err != nil {
		t.Fatal(err)
	}
	approve := listaddr.Of(polList, listaddr.Approve, strings.ToUpper(tokens[0]))
	reject := listaddr.Of(polList, listaddr.Reject, tokens[0])
	forged := listaddr.Of(polList, listaddr.Approve, strings.Repeat("a", lists.TokenLen))
	garbage := listaddr.Of(polList, listaddr.Reject, "not-a-token")

	for _, rcpt := range []string{forged, garbage} {
		var ce *CommandError
		if _, err := x.Lookup(ctx, rcpt); !errors.As(err, &ce) || !strings.Contains(ce.Reason, "unknown or has expired") {
			t.Errorf("Lookup(%s) = %v, want a CommandError", rcpt, err)
		}
	}
	canon, err := x.Lookup(ctx, approve)
	if err != nil || canon != strings.ToLower(approve) {
		t.Fatalf("Lookup(approve) = %q, %v", canon, err)
	}
	cmd := Post{ID: "QCMD", Received: time.Now(), Sender: moderator, Lists: []string{canon},
		Body: envelope.Bytes("From: " + moderator + "\r\nSubject: Re: held\r\n\r\nok\r\n")}
	exp, err = x.Expand(ctx, cmd)
	want := fmt.Sprintf("Approved post %d to %s, by %s", id, polList, moderator)
	if err != nil || exp.Reply != want || recipients(t, exp.Message) != 0 {
		t.Fatalf("approve = %+v, %v; want reply %q", exp, err, want)
	}
	if p, _ := store.GetPost(ctx, id); p.State != lists.PostAccepted {
		t.Errorf("post after approve: %+v", p)
	}
	// A retry of the same command: accepted, nothing changes.
	if _, err := x.Lookup(ctx, approve); err != nil {
		t.Errorf("Lookup(approve) again: %v", err)
	}
	if exp, err = x.Expand(ctx, cmd); err != nil || exp.Reply != "Already approved: nothing changed" {
		t.Errorf("approve again = %+v, %v", exp, err)
	}
	// The other command with the spent token: refused at RCPT.
	var ce *CommandError
	if _, err := x.Lookup(ctx, reject); !errors.As(err, &ce) ||
		ce.Reason != "The post was already approved by "+moderator+"; nothing was changed" {
		t.Errorf("Lookup(reject) after approve = %v", err)
	}
	cmd.Lists = []string{strings.ToLower(reject)}
	if _, err := x.Expand(ctx, cmd); !errors.As(err, &ce) {
		t.Errorf("Expand(reject) after approve = %v, want a CommandError", err)
	}
}

// TestDMARCOnTheCopy: a strict policy munges the copy's From; a failed
// lookup stores the post as accepted, and Distribute makes the same copy
// once the DNS answers.
func TestDMARCOnTheCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x, store, d := policyFixture(t)
	setPolicy(t, store, "posting=open")
	exp, err := x.Expand(ctx, postFrom(outsider, "Author <author@reject.example>"))
	if err != nil || len(exp.Message.Parts) != 1 {
		t.Fatalf("Expand = %+v, %v", exp, err)
	}
	prefix := exp.Message.Parts[0].Prefix
	if !bytes.Contains(prefix, []byte("From: \"Author via l\" <l@lists.example.org>\r\n")) ||
		!bytes.Contains(prefix, []byte("Reply-To: \"Author\" <author@reject.example>\r\n")) {
		t.Errorf("copy not munged:\n%s", prefix)
	}

	p := postFrom(outsider, "Author <author@broken.example>")
	exp, err = x.Expand(ctx, p)
	if err != nil || len(exp.Stored) != 1 || recipients(t, exp.Message) != 0 {
		t.Fatalf("Expand with DNS failing = %+v, %v; want the post stored", exp, err)
	}
	post, _ := store.GetPost(ctx, exp.Stored[0])
	if post.State != lists.PostAccepted || !strings.Contains(post.Reason, "DMARC lookup for broken.example failed") {
		t.Errorf("stored post %+v", post)
	}
	if _, err := x.Distribute(ctx, p, polList, "QNEW"); !errors.Is(err, ErrDeferred) {
		t.Errorf("Distribute while the DNS fails = %v, want ErrDeferred", err)
	}
	d.SetRcode("_dmarc.broken.example", dns.RcodeSuccess)
	if err := d.AddRR(`_dmarc.broken.example. 300 IN TXT "v=DMARC1; p=quarantine"`); err != nil {
		t.Fatal(err)
	}
	m, err := x.Distribute(ctx, p, polList, "QNEW")
	if err != nil || m.ID != "QNEW" || recipients(t, m) != 1 {
		t.Fatalf("Distribute = %+v, %v", m, err)
	}
	prefix = m.Parts[0].Prefix
	if !bytes.Contains(prefix, []byte("From: \"Author via l\" <l@lists.example.org>\r\n")) ||
		!bytes.Contains(prefix, []byte("with ESMTP id "+p.ID)) {
		t.Errorf("distributed copy:\n%s", prefix)
	}
}

// TestLoopBeforePolicy: a post carrying the list's own List-Id is a loop,
// even from someone whose post would be held.
func TestLoopBeforePolicy(t *testing.T) {
	t.Parallel()
	x, _, _ := policyFixture(t)
	p := postFrom(outsider, outsider)
	p.Body = envelope.Bytes("List-Id: L <L.lists.example.org>\r\nFrom: " + outsider + "\r\n\r\nbody\r\n")
	if _, err := x.Expand(context.Background(), p); !errors.Is(err, ErrLoop) {
		t.Errorf("Expand = %v, want ErrLoop", err)
	}
	p.Body = envelope.Bytes("From: a@b\r\nbroken header line\r\n\r\nbody\r\n")
	if _, err := x.Expand(context.Background(), p); !errors.Is(err, ErrBadHeader) {
		t.Errorf("Expand of a bad header = %v, want ErrBadHeader", err)
	}
}

// recipients counts the recipients of m's parts, running the streams as
// the queue would.
func recipients(t *testing.T, m *queuegroups.Message) int {
	t.Helper()
	n := 0
	for _, p := range m.Parts {
		for _, e := range p.Envelopes {
			n += len(e.Recipients)
		}
		if p.Stream != nil {
			if err := p.Stream(func(e envelope.Envelope) error { n += len(e.Recipients); return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}
