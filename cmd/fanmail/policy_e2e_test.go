package main

// Who may post and moderation, through the real binary: posts over SMTP
// to ingress, copies and notices at the sinks, the CLI acting on held
// posts from its own process.

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// reply is what the server answered a transaction: at RCPT, or at the
// end of DATA.
type reply struct {
	stage string // "rcpt" or "data"
	code  int
	enh   smtp.EnhancedCode
	text  string
}

func (r reply) String() string { return fmt.Sprintf("%s: %d %v %s", r.stage, r.code, r.enh, r.text) }

// send runs one transaction and returns the reply that ended it.
func send(t testing.TB, addr, from, rcpt, msg string) reply {
	t.Helper()
	status, stage, refused := transaction(t, addr, "client.example.net", from, rcpt, msg)
	if refused != nil {
		return reply{stage, refused.Code, refused.EnhancedCode, refused.Message}
	}
	_, text, _ := strings.Cut(status, " ")                      // after the enhanced code
	return reply{"data", 250, smtp.EnhancedCode{2, 0, 0}, text} // the client takes only 2xx here
}

func postFrom(from, subject string) string {
	return "From: " + from + "\r\nTo: list\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		strings.ReplaceAll(subject, " ", "-") + "@client.example.net>\r\n\r\nHello.\r\n"
}

// messagesTo returns every message the sinks got for rcpt.
func (n *fakeNet) messagesTo(rcpt string) []fakenet.Delivery {
	var out []fakenet.Delivery
	for _, s := range n.sinks {
		for _, d := range s.Deliveries() {
			for _, r := range d.Recipients {
				if r == rcpt {
					out = append(out, d)
				}
			}
		}
	}
	return out
}

// waitMessages waits until rcpt has n messages, gives a would-be extra
// copy a moment, and returns them.
func (n *fakeNet) waitMessages(t testing.TB, rcpt string, want int, p *proc) []fakenet.Delivery {
	t.Helper()
	n.waitCount(t, "messages to "+rcpt, func() int { return len(n.messagesTo(rcpt)) }, want, 30*time.Second, p)
	time.Sleep(300 * time.Millisecond)
	got := n.messagesTo(rcpt)
	if len(got) != want {
		t.Fatalf("%s got %d messages, want %d", rcpt, len(got), want)
	}
	return got
}

// modLs returns the held posts `fanmail mod ls` prints for list, by
// subject (its column is where the WHY column starts after it).
func modLsIDs(t testing.TB, cfg, list string) map[string]string {
	t.Helper()
	out := fanmailCLI(t, cfg, "", "mod", "ls", list)
	ids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		// ID LIST STATE DATE TIME FROM SIZE SUBJECT... WHY...
		ids[f[7]] = f[0]
	}
	return ids
}

// TestPostingPolicyEndToEnd: each posting policy with each non-member
// action, for a post from an outsider and one from a member, over SMTP:
// distributed to the member, held (250, in mod ls, moderators notified),
// rejected (550 5.7.1 at the end of DATA, saying what to do) or
// discarded (250, nothing anywhere).
func TestPostingPolicyEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "d01.test", "d02.test", "lists.example.org"}, nil)
	cfg := n.newConfig(t, "")
	type outcome struct{ outsider, member string }
	want := map[string]outcome{
		"members/hold":      {"hold", "distribute"},
		"members/reject":    {"reject", "distribute"},
		"members/discard":   {"discard", "distribute"},
		"open/hold":         {"distribute", "distribute"},
		"open/reject":       {"distribute", "distribute"},
		"open/discard":      {"distribute", "distribute"},
		"moderated/hold":    {"hold", "hold"},
		"moderated/reject":  {"hold", "hold"},
		"moderated/discard": {"hold", "hold"},
		"announce/hold":     {"hold", "hold"},
		"announce/reject":   {"reject", "reject"},
		"announce/discard":  {"discard", "discard"},
	}
	listOf := func(key string) string { return strings.Replace(key, "/", "-", 1) + "@lists.example.org" }
	memberOf := func(key string) string { return "m-" + strings.Replace(key, "/", "-", 1) + "@d00.test" }
	for key := range want {
		posting, action, _ := strings.Cut(key, "/")
		l := listOf(key)
		fanmailCLI(t, cfg, "", "list", "create", l, "--owner", "owner@d01.test")
		fanmailCLI(t, cfg, "", "member", "add", l, memberOf(key))
		fanmailCLI(t, cfg, "", "moderator", "add", l, "mod@d01.test")
		fanmailCLI(t, cfg, "", "list", "set", l, "posting="+posting, "nonmember_action="+action)
	}
	p := startFanmail(t, cfg)
	delivered, held := map[string]int{}, 0
	for key, w := range want {
		l := listOf(key)
		for _, c := range []struct{ who, from, want string }{
			{"outsider", "outsider@d02.test", w.outsider},
			{"member", memberOf(key), w.member},
		} {
			r := send(t, p.addr, c.from, l, postFrom(c.from, c.who+" "+key))
			switch c.want {
			case "reject":
				if r.stage != "data" || r.code != 550 || r.enh != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(r.text, "may post to it;") {
					t.Errorf("%s from %s: %v, want 550 5.7.1 at the end of DATA saying what to do", key, c.who, r)
				}
				continue
			case "distribute":
				delivered[memberOf(key)]++
			case "hold":
				held++
			}
			if r.code != 250 || !strings.HasPrefix(r.text, "OK queued as ") {
				t.Errorf("%s from %s: %v, want 250 OK queued as ID", key, c.who, r)
			}
		}
	}
	total := 0
	for _, k := range delivered {
		total += k
	}
	n.waitCount(t, "copies to members", func() int {
		c := 0
		for key := range want {
			c += len(n.messagesTo(memberOf(key)))
		}
		return c
	}, total, 30*time.Second, p)
	n.waitMessages(t, "mod@d01.test", held, p)
	for key := range want {
		if got := len(n.messagesTo(memberOf(key))); got != delivered[memberOf(key)] {
			t.Errorf("%s: the member got %d copies, want %d", key, got, delivered[memberOf(key)])
		}
		wantHeld := 0
		for _, o := range []string{want[key].outsider, want[key].member} {
			if o == "hold" {
				wantHeld++
			}
		}
		if got := len(modLsIDs(t, cfg, listOf(key))); got != wantHeld {
			t.Errorf("%s: mod ls shows %d held posts, want %d", key, got, wantHeld)
		}
	}
	p.stop(t)
}

var approveRE = regexp.MustCompile(`(?m)^Reply-To: <?([a-z]+-approve\+([a-z2-7]+)@lists\.example\.org)>?\r$`)

// TestModerationEndToEnd is the moderation workflow over SMTP and the
// CLI: a held post's notice, approval by replying to it, a forged and a
// replayed token, reject, discard and approve from the CLI, a held post
// that survives a SIGKILL, one approved while no server runs, and one
// that expires.
func TestModerationEndToEnd(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test", "d01.test", "d02.test", "lists.example.org"}, nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, "")
	fanmailCLI(t, cfg, "", "list", "create", e2eList, "--owner", "owner@d01.test")
	fanmailCLI(t, cfg, "", "member", "add", e2eList, "m1@d00.test", "m2@d00.test")
	fanmailCLI(t, cfg, "", "moderator", "add", e2eList, "mod@d01.test")
	p := startFanmail(t, cfg)

	// A: held; the moderator's notice says how to act.
	held := func(subject string) {
		t.Helper()
		if r := send(t, p.addr, "poster@d02.test", e2eList, postFrom("poster@d02.test", subject)); r.code != 250 {
			t.Fatalf("post %s: %v", subject, r)
		}
	}
	held("post-A")
	notice := n.waitMessages(t, "mod@d01.test", 1, p)[0]
	m := approveRE.FindSubmatch(notice.Data)
	if m == nil {
		t.Fatalf("notice has no approve Reply-To:\n%s", notice.Data)
	}
	approveA, tokenA := string(m[1]), string(m[2])
	rejectA := "announce-reject+" + tokenA + "@lists.example.org"
	if notice.From != e2eBounces || !bytes.Contains(notice.Data, []byte(rejectA)) ||
		!bytes.Contains(notice.Data, []byte("Content-Type: message/rfc822")) || !bytes.Contains(notice.Data, []byte("Subject: post-A\r\n")) {
		t.Errorf("notice from <%s>:\n%s", notice.From, notice.Data)
	}

	// The held post survives a SIGKILL of the server.
	p.kill(t)
	p = startFanmail(t, cfg)
	if ids := modLsIDs(t, cfg, e2eList); ids["post-A"] == "" {
		t.Fatalf("post-A not held after the restart: %v", ids)
	}

	// A forged token is refused at RCPT, and changes nothing.
	forged := "announce-approve+" + strings.Repeat("b", len(tokenA)) + "@lists.example.org"
	if r := send(t, p.addr, "mod@d01.test", forged, "Subject: yes\r\n\r\nok\r\n"); r.stage != "rcpt" || r.code != 550 ||
		r.enh != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(r.text, "unknown or has expired") {
		t.Errorf("forged token: %v, want 550 5.7.1 at RCPT", r)
	}
	// Replying to the notice approves A, before the 250.
	r := send(t, p.addr, "mod@d01.test", approveA, "From: mod@d01.test\r\nSubject: Re: held\r\n\r\nok\r\n")
	if r.code != 250 || !strings.HasPrefix(r.text, "Approved post ") {
		t.Fatalf("approve by reply: %v", r)
	}
	n.waitMessages(t, "m1@d00.test", 1, p)
	// The same command again: 250, nothing changes; the other command
	// with the spent token: 550 5.7.1 at RCPT.
	if r := send(t, p.addr, "mod@d01.test", approveA, "Subject: Re: held\r\n\r\nok\r\n"); r.code != 250 || r.text != "Already approved: nothing changed" {
		t.Errorf("approve again: %v", r)
	}
	if r := send(t, p.addr, "mod@d01.test", rejectA, "Subject: no\r\n\r\nno\r\n"); r.stage != "rcpt" || r.code != 550 ||
		!strings.Contains(r.text, "already approved by mod@d01.test") {
		t.Errorf("reject with the spent token: %v", r)
	}

	// B rejected, C discarded, D approved from the CLI.
	for _, s := range []string{"post-B", "post-C", "post-D"} {
		held(s)
	}
	n.waitMessages(t, "mod@d01.test", 4, p)
	ids := modLsIDs(t, cfg, e2eList)
	fanmailCLI(t, cfg, "", "mod", "reject", ids["post-B"], "--reason", "Off topic for this list")
	fanmailCLI(t, cfg, "", "mod", "discard", ids["post-C"])
	fanmailCLI(t, cfg, "", "mod", "approve", ids["post-D"])
	rejected := n.waitMessages(t, "poster@d02.test", 1, p)[0]
	if !bytes.Contains(rejected.Data, []byte("Off topic for this list")) || rejected.From != e2eBounces {
		t.Errorf("rejection notice from <%s>:\n%s", rejected.From, rejected.Data)
	}
	n.waitMessages(t, "m2@d00.test", 2, p) // A and D

	// E: held, the server killed, approved while no server runs: it
	// goes out at the next start.
	held("post-E")
	n.waitMessages(t, "mod@d01.test", 5, p)
	p.kill(t)
	fanmailCLI(t, cfg, "", "mod", "approve", modLsIDs(t, cfg, e2eList)["post-E"])
	p = startFanmail(t, cfg)
	n.waitMessages(t, "m1@d00.test", 3, p)

	// F: held, then its time runs out (the store is told so directly:
	// hold_days are days); its token dies with it.
	held("post-F")
	noticeF := n.waitMessages(t, "mod@d01.test", 6, p)
	var approveF string
	for _, d := range noticeF {
		if bytes.Contains(d.Data, []byte("Subject: post-F")) {
			approveF = string(approveRE.FindSubmatch(d.Data)[1])
		}
	}
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "lists.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE posts SET expires = 1 WHERE subject = 'post-F'"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !testutil.Poll(10*time.Second, 50*time.Millisecond, func() bool { return modLsIDs(t, cfg, e2eList)["post-F"] == "" }) {
		t.Fatal("post-F did not expire")
	}
	if r := send(t, p.addr, "mod@d01.test", approveF, "Subject: yes\r\n\r\n"); r.stage != "rcpt" || r.code != 550 {
		t.Errorf("token of an expired post: %v, want 550 at RCPT", r)
	}
	if !waitLog(p, `msg="held post expired; discarded"`) {
		t.Error("no log line for the expired post")
	}

	// Every member got A, D and E once; nothing else went out.
	time.Sleep(300 * time.Millisecond)
	for _, mem := range []string{"m1@d00.test", "m2@d00.test"} {
		var subjects []string
		for _, d := range n.messagesTo(mem) {
			for _, s := range []string{"post-A", "post-B", "post-C", "post-D", "post-E", "post-F"} {
				if bytes.Contains(d.Data, []byte("Subject: "+s+"\r\n")) {
					subjects = append(subjects, s)
				}
			}
		}
		slices.Sort(subjects)
		if strings.Join(subjects, ",") != "post-A,post-D,post-E" {
			t.Errorf("%s got %v, want post-A, post-D and post-E once each", mem, subjects)
		}
	}
	if got := len(n.messagesTo("poster@d02.test")); got != 1 {
		t.Errorf("the poster got %d notices, want the one rejection", got)
	}
	p.stop(t)
}
