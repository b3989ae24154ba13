package main

// Commands by mail, bounce processing and a list's own mail kept inside
// fanmail, through the real binary: commands and replies over SMTP,
// confirmations, answers and notices at the sinks, the list domain
// absent from the DNS so that nothing for it can leave the box.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// mailList's domain has no DNS records in these tests: mail for its
// addresses is handled inside fanmail or not at all.
const mailList = "news@lists.example.org"

func command(from, subject, body string) string {
	return "From: " + from + "\r\nTo: " + mailList + "\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		fmt.Sprint(time.Now().UnixNano()) + "@client.example.net>\r\n\r\n" + body + "\r\n"
}

// memberSet returns the members `fanmail member ls` prints.
func memberSet(t testing.TB, cfg, list string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range strings.Fields(fanmailCLI(t, cfg, "", "member", "ls", list)) {
		out[m] = true
	}
	return out
}

// TestSubscribeByMail: subscribe and unsubscribe round trips by mail,
// each confirmed by a reply to the confirmation; a forged, a replayed
// and an expired confirmation address are refused at RCPT with a reply
// that says so, and change nothing.
func TestSubscribeByMail(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "owner.test"}, nil)
	cfg := n.newConfig(t, "")
	fanmailCLI(t, cfg, "", "list", "create", mailList, "--owner", "owner@owner.test")
	p := startFanmail(t, cfg)
	const bob = "bob@d00.test"
	request := strings.Replace(mailList, "@", "-request@", 1)
	// confirm sends reply to a confirmation address: bob's nth message
	// is then the one about subject, and bob a member or not.
	confirm := func(token, reply string, nth int, subject string, member bool) {
		t.Helper()
		if r := send(t, p.addr, bob, token, reply); r.code != 250 {
			t.Fatalf("confirming reply: %v", r)
		}
		if m := n.waitMessages(t, bob, nth, p)[nth-1]; !bytes.Contains(m.Data, []byte("Subject: "+subject)) {
			t.Errorf("message %d is not the one about %q:\n%s", nth, subject, m.Data)
		}
		if memberSet(t, cfg, mailList)[bob] != member {
			t.Fatalf("member %v after confirming, want %v", !member, member)
		}
	}

	// Subscribe: the command in the subject; the confirmation comes
	// from the list's bounce address, its Reply-To the token address.
	if r := send(t, p.addr, bob, request, command("Bob <"+bob+">", "subscribe", "")); r.code != 250 {
		t.Fatalf("subscribe: %v", r)
	}
	conf := n.waitMessages(t, bob, 1, p)[0]
	if conf.From != "news-bounces@lists.example.org" || !bytes.Contains(conf.Data, []byte("Auto-Submitted: auto-replied")) {
		t.Errorf("confirmation from <%s>:\n%s", conf.From, conf.Data)
	}
	token := testutil.ReplyTo(t, conf.Data)
	if !regexp.MustCompile(`^news-confirm\+[a-z2-7]{32}@lists\.example\.org$`).MatchString(token) {
		t.Fatalf("confirmation address %q is not news-confirm+TOKEN (160 bits)", token)
	}
	if memberSet(t, cfg, mailList)[bob] {
		t.Fatal("subscribed before confirming")
	}
	// Any reply completes it.
	confirm(token, command(bob, "Re: Confirm your subscribe request", "> quoted text"), 2, "Welcome to "+mailList, true)

	// The same token again, and a forged one: refused, nothing changed.
	if r := send(t, p.addr, bob, token, command(bob, "again", "")); r.stage != "rcpt" || r.code != 550 ||
		r.enh != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(r.text, "already used") {
		t.Errorf("replayed confirmation: %v, want 550 5.7.1 at RCPT saying it was used", r)
	}
	forged := "news-confirm+" + strings.Repeat("q", 32) + "@lists.example.org"
	if r := send(t, p.addr, bob, forged, command(bob, "forged", "")); r.stage != "rcpt" || r.code != 550 ||
		!strings.Contains(r.text, "unknown or has expired") {
		t.Errorf("forged confirmation: %v, want 550 at RCPT saying it is unknown", r)
	}

	// Unsubscribe, through LIST-unsubscribe: any message will do.
	if r := send(t, p.addr, bob, "news-unsubscribe@lists.example.org", command(bob, "bye", "")); r.code != 250 {
		t.Fatalf("unsubscribe: %v", r)
	}
	token2 := testutil.ReplyTo(t, n.waitMessages(t, bob, 3, p)[2].Data)
	if !memberSet(t, cfg, mailList)[bob] {
		t.Fatal("unsubscribed before confirming")
	}
	confirm(token2, command(bob, "yes", ""), 4, "You have left "+mailList, false)

	// An expired token: confirm_expire of a second, a reply after it.
	fanmailCLI(t, cfg, "", "list", "set", mailList, "confirm_expire=1s")
	const carol = "carol@d00.test"
	if r := send(t, p.addr, carol, request, command(carol, "Help?", "subscribe\r\nthanks")); r.code != 250 {
		t.Fatalf("subscribe in the body: %v", r)
	}
	token3 := testutil.ReplyTo(t, n.waitMessages(t, carol, 1, p)[0].Data)
	time.Sleep(2100 * time.Millisecond)
	if r := send(t, p.addr, carol, token3, command(carol, "late", "")); r.stage != "rcpt" || r.code != 550 ||
		!strings.Contains(r.text, "unknown or has expired") {
		t.Errorf("expired confirmation: %v, want 550 at RCPT saying it expired", r)
	}
	if memberSet(t, cfg, mailList)[carol] {
		t.Error("an expired confirmation subscribed")
	}
	if len(n.messagesTo("owner@owner.test")) != 0 {
		t.Error("the owner got mail; commands are no business of theirs")
	}
	p.stop(t)
}

// TestCommandAnswersLimited: answers to one address stop at
// max_autoresponses_per_day, whoever sends the commands in its name;
// the null sender and automatic messages (RFC 3834) get none.
func TestCommandAnswersLimited(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test"}, nil)
	cfg := n.newConfig(t, "")
	fanmailCLI(t, cfg, "", "list", "create", mailList)
	fanmailCLI(t, cfg, "", "list", "set", mailList, "max_autoresponses_per_day=3")
	p := startFanmail(t, cfg)
	const victim = "victim@d00.test"
	request := "news-request@lists.example.org"
	for i := range 6 {
		// Subscription requests and help, all in the victim's name.
		subject := "help"
		if i%2 == 1 {
			subject = "subscribe"
		}
		if r := send(t, p.addr, "attacker@d00.test", request, command(victim, subject, "")); r.code != 250 {
			t.Fatalf("command %d: %v", i, r)
		}
	}
	for _, c := range []struct{ sender, header string }{
		{"", ""}, // a bounce
		{victim, "Auto-Submitted: auto-replied\r\n"},
		{victim, "Precedence: bulk\r\n"},
		{victim, "List-Id: <other.example.net>\r\n"},
	} {
		if r := send(t, p.addr, c.sender, request, c.header+command("someone@d00.test", "help", "")); r.code != 250 {
			t.Fatalf("automatic command: %v", r)
		}
	}
	got := n.waitMessages(t, victim, 3, p)
	time.Sleep(time.Second) // time for a fourth answer, were there one
	if len(n.messagesTo(victim)) != 3 {
		t.Errorf("victim got %d answers, want 3 (the daily limit)", len(n.messagesTo(victim)))
	}
	for _, d := range got {
		if !bytes.Contains(d.Data, []byte("Auto-Submitted: auto-replied")) {
			t.Errorf("answer without Auto-Submitted:\n%s", d.Data)
		}
	}
	if len(n.messagesTo("someone@d00.test")) != 0 {
		t.Error("an automatic message was answered")
	}
	if !waitLog(p, "daily limit") {
		t.Error("the limit is not logged")
	}
	p.stop(t)
}

// TestBouncingMemberDisabled: a member whose MX answers 550 5.1.1 to
// every post is recorded with the evidence, disabled once its score
// reaches bounce_score_threshold (the owner is told), and gets no more
// copies while the others do; member enable brings it back. The same
// with personalize = verp, where each member's copy goes out from its
// own VERP address.
func TestBouncingMemberDisabled(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"off", "verp"} {
		t.Run("personalize="+mode, func(t *testing.T) {
			t.Parallel()
			bouncingMemberDisabled(t, mode)
		})
	}
}

func bouncingMemberDisabled(t *testing.T, personalize string) {
	var mu sync.Mutex
	attempts := 0 // RCPTs for the dead member
	n := newFakeNet(t, []string{"d00.test", "d01.test", "owner.test"}, func(d string) fakenet.SinkOptions {
		if d != "d00.test" {
			return fakenet.SinkOptions{}
		}
		return fakenet.SinkOptions{RcptHook: func(from, to string) error {
			if to != "gone@d00.test" {
				return nil
			}
			mu.Lock()
			attempts++
			mu.Unlock()
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}}
	})
	tries := func() int {
		mu.Lock()
		defer mu.Unlock()
		return attempts
	}
	cfg := n.newConfig(t, "")
	openList(t, cfg, mailList, "--owner", "owner@owner.test")
	fanmailCLI(t, cfg, "ok@d00.test\ngone@d00.test\nok@d01.test\n", "member", "add", mailList, "--file", "-")
	fanmailCLI(t, cfg, "", "list", "set", mailList, "bounce_score_threshold=1", "bounce_you_are_disabled_warnings=1", "personalize="+personalize)
	p := startFanmail(t, cfg)

	postTo(t, p.addr, "poster@example.org", mailList, postFrom("poster@example.org", "post one"))
	notice := n.waitMessages(t, "owner@owner.test", 1, p)[0]
	if !bytes.Contains(notice.Data, []byte("its member gone@d00.test is disabled")) || notice.From != "news-bounces@lists.example.org" {
		t.Errorf("owner's notice from <%s>:\n%s", notice.From, notice.Data)
	}
	show := fanmailCLI(t, cfg, "", "member", "show", mailList, "gone@d00.test")
	for _, want := range []string{"delivery: disabled by bounces", "bounce score: 1 (threshold 1;",
		"failed 5.1.1 hard (smtp)", "550 5.1.1 no such user here"} {
		if !strings.Contains(squash(show), want) {
			t.Errorf("member show lacks %q:\n%s", want, show)
		}
	}
	if ls := fanmailCLI(t, cfg, "", "member", "ls", mailList, "--bouncing"); !strings.Contains(ls, "gone@d00.test") ||
		!strings.Contains(ls, "disabled by bounces") || strings.Contains(ls, "ok@") {
		t.Errorf("member ls --bouncing:\n%s", ls)
	}
	// The warning to the member (its MX refuses that too) comes right
	// after the notice; then nothing more goes to it.
	n.waitCount(t, "attempts for the dead member", tries, 2, 30*time.Second, p)
	before := tries()
	postTo(t, p.addr, "poster@example.org", mailList, postFrom("poster@example.org", "post two"))
	n.waitMessages(t, "ok@d00.test", 2, p)
	n.waitMessages(t, "ok@d01.test", 2, p)
	if tries() != before {
		t.Errorf("the disabled member was tried %d more times, want none", tries()-before)
	}
	if !memberSet(t, cfg, mailList)["gone@d00.test"] {
		t.Error("the disabled member was removed; it stays until its warnings ran out")
	}
	// Nothing for the list's domain left the box: its DSNs were read
	// inside, and its domain is not even in the DNS.
	if strings.Contains(p.log.String(), "lists.example.org") && strings.Contains(p.log.String(), "NXDOMAIN") {
		t.Error("fanmail looked up the list's domain")
	}

	out := fanmailCLI(t, cfg, "", "member", "enable", mailList, "gone@d00.test")
	if !strings.Contains(out, "enabled again") {
		t.Errorf("member enable: %s", out)
	}
	postTo(t, p.addr, "poster@example.org", mailList, postFrom("poster@example.org", "post three"))
	n.waitCount(t, "attempts after enable", tries, before+1, 30*time.Second, p)
	p.stop(t)
}

// TestOwnerMailWithoutDNS: with the list's domain absent from the DNS,
// mail to owner-LIST reaches the owner from the list's bounce address,
// and a DSN fanmail itself sends to owner-LIST (here, for an alias
// whose owner-NAME points there) reaches the owner too, instead of
// bouncing with NXDOMAIN.
func TestOwnerMailWithoutDNS(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "owner.test"}, func(d string) fakenet.SinkOptions {
		return fakenet.SinkOptions{RcptHook: fakenet.RcptReplies{
			"gone": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"},
		}.Hook}
	})
	dir := t.TempDir()
	file := writeFile(t, dir, "aliases", "staff: gone@d00.test\nowner-staff: owner-news@lists.example.org\n")
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = `program_user = "nobody"`
	}
	cfg := n.writeConfig(t, filepath.Join(dir, "data"), fmt.Sprintf("[aliases]\nfiles = [%q]\nlocal_domains = [\"fanmail.test\"]\n%s\n", file, runAs))
	fanmailCLI(t, cfg, "", "list", "create", mailList, "--owner", "owner@owner.test")
	p := startFanmail(t, cfg)

	postTo(t, p.addr, "someone@d00.test", "owner-news@lists.example.org", command("someone@d00.test", "a question", "for the owner"))
	got := n.waitMessages(t, "owner@owner.test", 1, p)[0]
	if got.From != "news-bounces@lists.example.org" || !bytes.Contains(got.Data, []byte("Subject: a question")) {
		t.Errorf("owner's mail from <%s>:\n%s", got.From, got.Data)
	}

	postTo(t, p.addr, "someone@d00.test", "staff@fanmail.test", command("someone@d00.test", "for staff", "hello"))
	dsn := n.waitMessages(t, "owner@owner.test", 2, p)[1]
	for _, want := range []string{"report-type=delivery-status", "Final-Recipient: rfc822; gone@d00.test", "550 5.1.1 no such user here"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Errorf("the DSN at the owner lacks %q:\n%s", want, dsn.Data)
		}
	}
	if dsn.From != "" {
		t.Errorf("the DSN reached the owner from <%s>, want the null sender", dsn.From)
	}
	if strings.Contains(p.log.String(), "NXDOMAIN") {
		t.Errorf("a list address was looked up in the DNS:\n%s", p.log.String())
	}
	p.stop(t)
}

// squash makes every run of blanks one space, for output in columns.
func squash(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		b.WriteString(strings.Join(strings.Fields(line), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestRemoteBounceRecorded: a report from a remote MTA, mailed to the
// list's bounce address over SMTP (plain, or VERP'd for one member),
// is read inside fanmail and recorded against the members it names,
// with its evidence.
func TestRemoteBounceRecorded(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"owner.test"}, nil)
	cfg := n.newConfig(t, "")
	const dev = "dev@lists.example.org"
	fanmailCLI(t, cfg, "", "list", "create", dev, "--owner", "owner@owner.test")
	fanmailCLI(t, cfg, "erin@example.com\nfrank@example.net\nvera@example.org\n", "member", "add", dev, "--file", "-")
	p := startFanmail(t, cfg)
	report, err := os.ReadFile("../../testdata/bounces/03-postfix-dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	postTo(t, p.addr, "", "dev-bounces@lists.example.org", string(bytes.ReplaceAll(report, []byte("\n"), []byte("\r\n"))))
	// A bare notice to vera's VERP address: it names her by the address.
	postTo(t, p.addr, "", "dev-bounces+vera=example.org@lists.example.org",
		"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nThe mail system could not deliver your message.\r\n")
	if !testutil.Poll(30*time.Second, 50*time.Millisecond, func() bool {
		return strings.Contains(fanmailCLI(t, cfg, "", "member", "ls", dev, "--bouncing"), "vera@example.org") &&
			strings.Contains(fanmailCLI(t, cfg, "", "member", "ls", dev, "--bouncing"), "frank@example.net")
	}) {
		p.dumpLog(t)
		t.Fatal("the bounces were not recorded")
	}
	for m, wants := range map[string][]string{
		"erin@example.com":  {"bounce score: 1 (threshold 5;", "failed 5.1.1 hard (dsn), from mx1.example.com", "User unknown in virtual mailbox table"},
		"frank@example.net": {"bounce score: 0.5 (threshold 5;", "failed 5.7.1 soft (dsn)"},
		"vera@example.org":  {"bounce score: 1 (threshold 5;", "(dsn)"},
	} {
		show := squash(fanmailCLI(t, cfg, "", "member", "show", dev, m))
		for _, want := range wants {
			if !strings.Contains(show, want) {
				t.Errorf("member show %s lacks %q:\n%s", m, want, show)
			}
		}
	}
	if got := len(n.messagesTo("owner@owner.test")); got != 0 {
		t.Errorf("the owner got %d messages; bounces naming members are no business of theirs until one is disabled", got)
	}
	p.stop(t)
}
