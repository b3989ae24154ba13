package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"fanmail/internal/testutil"
)

// TestApproveSubscriptionOnServer: on a moderated list a subscription
// confirmed by mail waits for a moderator; the operator sees it with
// member requests and approves it with member approve; the member is
// added at once and the server sends the welcome (here at its next
// start), once; the moderator's own approval address is used up.
func TestApproveSubscriptionOnServer(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test"}, nil)
	cfg := n.newConfig(t, "")
	fanmailCLI(t, cfg, "", "list", "create", mailList, "--owner", "owner@d00.test")
	fanmailCLI(t, cfg, "", "list", "set", mailList, "subscribe_policy=moderate")
	fanmailCLI(t, cfg, "", "moderator", "add", mailList, "mod@d00.test")
	p := startFanmail(t, cfg)
	const bob, mod = "bob@d00.test", "mod@d00.test"
	if r := send(t, p.addr, bob, "news-request@lists.example.org", command(bob, "subscribe", "")); r.code != 250 {
		t.Fatalf("subscribe: %v", r)
	}
	token := testutil.ReplyTo(t, n.waitMessages(t, bob, 1, p)[0].Data)
	if r := send(t, p.addr, bob, token, command(bob, "Re: Confirm", "yes")); r.code != 250 {
		t.Fatalf("confirm: %v", r)
	}
	if m := n.waitMessages(t, bob, 2, p)[1]; !bytes.Contains(m.Data, []byte("Subject: Your subscription to "+mailList)) {
		t.Errorf("bob's second message is not the one saying a moderator decides:\n%s", m.Data)
	}
	notice := n.waitMessages(t, mod, 1, p)[0]
	if !bytes.Contains(notice.Data, []byte("On the server: fanmail member approve "+mailList+" 1,")) {
		t.Errorf("the moderator's notice does not say how to approve on the server:\n%s", notice.Data)
	}

	out := fanmailCLI(t, cfg, "", "member", "requests", mailList)
	if !regexp.MustCompile(`(?m)^1 +bob@d00\.test +subscribe +moderator +`).MatchString(out) {
		t.Errorf("member requests:\n%s", out)
	}
	p.stop(t)
	out = fanmailCLI(t, cfg, "", "member", "approve", mailList, "1")
	if want := "approved request 1: bob@d00.test is now a member of " + mailList; !strings.HasPrefix(out, want) {
		t.Errorf("member approve: %q, want it to start %q", out, want)
	}
	if !memberSet(t, cfg, mailList)[bob] {
		t.Fatal("not a member after member approve")
	}
	p = startFanmail(t, cfg)
	welcome := n.waitMessages(t, bob, 3, p)[2]
	if welcome.From != "news-bounces@lists.example.org" || !bytes.Contains(welcome.Data, []byte("Subject: Welcome to "+mailList)) {
		t.Errorf("bob's third message, from <%s>, is not the welcome:\n%s", welcome.From, welcome.Data)
	}
	if !waitLog(p, "listmail: subscription approved on the server") {
		t.Error("the welcome is not logged")
	}
	// The moderator who replies late is refused, told it was used.
	if r := send(t, p.addr, mod, testutil.ReplyTo(t, notice.Data), command(mod, "ok", "")); r.stage != "rcpt" || r.code != 550 ||
		!strings.Contains(r.text, "already used") {
		t.Errorf("the moderator's late approval: %v, want 550 at RCPT saying it was used", r)
	}
	// Once: another start sends no second welcome.
	p.stop(t)
	p = startFanmail(t, cfg)
	if out := fanmailCLI(t, cfg, "", "member", "requests", mailList); out != "no open requests on "+mailList+"\n" {
		t.Errorf("member requests after the approval: %q", out)
	}
	p.stop(t)
	if got := len(n.messagesTo(bob)); got != 3 {
		t.Errorf("bob got %d messages, want 3 (request, moderator decides, welcome)", got)
	}
}
