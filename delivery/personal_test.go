package delivery

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

// memberCopies is a Personalizer that gives each member a sender and a
// header field naming it, and fails for members whose local part is
// "broken".
type memberCopies struct {
	mu    sync.Mutex
	calls []string
}

func (m *memberCopies) Member(p envelope.Personal, sender, rcpt string) (envelope.MemberCopy, error) {
	m.mu.Lock()
	m.calls = append(m.calls, string(p.Template)+" "+rcpt)
	m.mu.Unlock()
	if strings.HasPrefix(rcpt, "broken@") {
		return envelope.MemberCopy{}, errors.New("no copy for you")
	}
	local, domain, _ := strings.Cut(rcpt, "@")
	return envelope.MemberCopy{Sender: "list-bounces+" + local + "=" + domain + "@list.test",
		Header: []byte("X-Member: " + rcpt + "\r\n")}, nil
}

// TestPersonalTransactions: a personalized envelope is one pipelined
// transaction per member, on one connection, each from the member's own
// sender and with its own header in front of the stored copy; each
// member's verdict is its own and reported as its transaction ends.
func TestPersonalTransactions(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true, reply: rcptReplies(map[string]string{
		"RCPT TO:<gone@": "550 5.1.1 no such user",
	})})
	pers := &memberCopies{}
	a := scriptedAgent(t, s, func(c *Config) { c.Personalizer = pers })
	env := request("example.test", "a", "gone", "broken", "b")
	env.Personal = envelope.Personal{Mode: envelope.PersonalizeVERP, Template: []byte("T")}
	var progress [][]int
	env.Progress = func(idx []int, _ []envelope.Result) { progress = append(progress, idx) }
	res := a.Deliver(ctxT(t), env)
	checkBriefs(t, []brief{{envelope.Delivered, 250, "2.0.0"}, {envelope.Failed, 550, "5.1.1"},
		{envelope.Deferred, 0, "4.3.0"}, {envelope.Delivered, 250, "2.0.0"}}, res)
	a.Close()
	conns, _, msgs, batches, _ := s.stats()
	if conns != 1 {
		t.Errorf("connections = %d, want 1", conns)
	}
	size := func(rcpt string) int { return len(testBody) + len("X-Member: "+rcpt+"\r\n") }
	wantBatches := [][]string{
		{fmt.Sprintf("MAIL FROM:<list-bounces+a=example.test@list.test> SIZE=%d BODY=8BITMIME", size("a@example.test")),
			"RCPT TO:<a@example.test>", "DATA"},
		{"RSET", fmt.Sprintf("MAIL FROM:<list-bounces+gone=example.test@list.test> SIZE=%d BODY=8BITMIME", size("gone@example.test")),
			"RCPT TO:<gone@example.test>", "DATA"},
		{"RSET", fmt.Sprintf("MAIL FROM:<list-bounces+b=example.test@list.test> SIZE=%d BODY=8BITMIME", size("b@example.test")),
			"RCPT TO:<b@example.test>", "DATA"},
	}
	if diff := cmp.Diff(wantBatches, batches); diff != "" {
		t.Errorf("pipelined groups (-want +got):\n%s", diff)
	}
	// The refused member's DATA was pipelined, so its 354 gets the empty
	// message RFC 2920 §3.1 calls for.
	wantMsgs := []string{"X-Member: a@example.test\n" + strings.ReplaceAll(testBody, "\r\n", "\n"), "",
		"X-Member: b@example.test\n" + strings.ReplaceAll(testBody, "\r\n", "\n")}
	if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]int{{0}, {1}, {3}}, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	wantCalls := []string{"T a@example.test", "T gone@example.test", "T broken@example.test", "T b@example.test"}
	if diff := cmp.Diff(wantCalls, pers.calls); diff != "" {
		t.Errorf("personalizer calls (-want +got):\n%s", diff)
	}
}

// TestPersonalWithoutPersonalizer: an agent with no Personalizer defers
// personalized envelopes rather than send them unpersonalized.
func TestPersonalWithoutPersonalizer(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true})
	a := scriptedAgent(t, s, nil)
	env := request("example.test", "a", "b")
	env.Personal = envelope.Personal{Mode: envelope.PersonalizeFull}
	checkBriefs(t, repeat(brief{envelope.Deferred, 0, "4.3.5"}, 2), a.Deliver(ctxT(t), env))
	if _, _, msgs, _, _ := s.stats(); len(msgs) != 0 {
		t.Errorf("server got %d messages, want none", len(msgs))
	}
}

// TestPersonalDotReplyPipelined: the reply to a member's final dot is
// read after the next member's commands went out, and still decides that
// member alone: a refused message fails only its member, and a
// connection lost before that reply defers only its member, the next
// one going out on a fresh connection.
func TestPersonalDotReplyPipelined(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		reply string // to the second final dot
		want  []brief
		conns int
	}{
		{"refused", "554 5.7.1 not this one", []brief{{envelope.Delivered, 250, "2.0.0"}, {envelope.Failed, 554, "5.7.1"}, {envelope.Delivered, 250, "2.0.0"}}, 1},
		{"lost", "hangup", []brief{{envelope.Delivered, 250, "2.0.0"}, {envelope.Deferred, 0, "4.4.2"}, {envelope.Delivered, 250, "2.0.0"}}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			dots := 0
			s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true, reply: func(cmd string) string {
				if cmd != "." {
					return ""
				}
				mu.Lock()
				defer mu.Unlock()
				if dots++; dots == 2 {
					return tt.reply
				}
				return ""
			}})
			a := scriptedAgent(t, s, func(c *Config) { c.Personalizer = &memberCopies{} })
			env := request("example.test", "a", "b", "c")
			env.Personal = envelope.Personal{Mode: envelope.PersonalizeVERP}
			var progress [][]int
			env.Progress = func(idx []int, _ []envelope.Result) { progress = append(progress, idx) }
			checkBriefs(t, tt.want, a.Deliver(ctxT(t), env))
			a.Close()
			if conns, _, _, _, _ := s.stats(); conns != tt.conns {
				t.Errorf("connections = %d, want %d", conns, tt.conns)
			}
			wantProgress := [][]int{{0}, {1}, {2}}
			if tt.want[1].Status == envelope.Deferred {
				wantProgress = [][]int{{0}, {2}}
			}
			if diff := cmp.Diff(wantProgress, progress); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
		})
	}
}
