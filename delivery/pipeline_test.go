package delivery

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

var pipeExt = []string{"PIPELINING", "8BITMIME", "SIZE 1000000", "ENHANCEDSTATUSCODES"}

func rcptReplies(m map[string]string) func(string) string {
	return func(cmd string) string {
		for prefix, reply := range m {
			if strings.HasPrefix(cmd, prefix) {
				return reply
			}
		}
		return ""
	}
}

func TestPipelinedTransaction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		replies  map[string]string
		want     []brief
		messages int
		conns    int // 0 means 1
	}{
		{
			name:     "all accepted",
			want:     repeat(brief{envelope.Delivered, 250, "2.0.0"}, 4),
			messages: 1,
		},
		{
			name: "some RCPTs rejected",
			replies: map[string]string{
				"RCPT TO:<gone@": "550 5.1.1 no such user",
				"RCPT TO:<busy@": "452 4.2.2 mailbox full",
			},
			want:     []brief{{envelope.Delivered, 250, "2.0.0"}, {envelope.Failed, 550, "5.1.1"}, {envelope.Deferred, 452, "4.2.2"}, {envelope.Delivered, 250, "2.0.0"}},
			messages: 1,
		},
		{
			name: "DATA rejected",
			replies: map[string]string{
				"RCPT TO:<gone@": "550 5.1.1 no such user",
				"DATA":           "554 5.7.1 not from you",
			},
			want: []brief{{envelope.Failed, 554, "5.7.1"}, {envelope.Failed, 550, "5.1.1"}, {envelope.Failed, 554, "5.7.1"}, {envelope.Failed, 554, "5.7.1"}},
		},
		{
			name:    "DATA deferred",
			replies: map[string]string{"DATA": "451 4.3.0 try later"},
			want:    repeat(brief{envelope.Deferred, 451, "4.3.0"}, 4),
		},
		{
			name: "MAIL rejected, later replies ignored",
			replies: map[string]string{
				"MAIL": "553 5.1.8 bad sender",
				"RCPT": "503 5.5.1 need MAIL",
				"DATA": "503 5.5.1 need RCPT",
			},
			want: repeat(brief{envelope.Failed, 553, "5.1.8"}, 4),
		},
		{
			name: "all RCPTs rejected but DATA gets 354",
			replies: map[string]string{
				"RCPT": "550 5.1.1 no such user",
				".":    "554 5.5.0 no valid recipients",
			},
			want:     repeat(brief{envelope.Failed, 550, "5.1.1"}, 4),
			messages: 1, // the empty one RFC 2920 §3.1 calls for
		},
		{
			name:     "end of data rejected",
			replies:  map[string]string{".": "552 5.3.4 too big after all"},
			want:     repeat(brief{envelope.Failed, 552, "5.3.4"}, 4),
			messages: 1, // received, then refused
		},
		{
			// Each time on a new connection after the throttle pause, then
			// deferred with the 421.
			name: "421 at RCPT ends the transaction",
			replies: map[string]string{
				"RCPT TO:<gone@": "421 4.3.2 shutting down",
			},
			want:  []brief{{envelope.Deferred, 421, "4.3.2"}, {envelope.Deferred, 421, "4.3.2"}, {envelope.Deferred, 421, "4.3.2"}, {envelope.Deferred, 421, "4.3.2"}},
			conns: 1 + maxFruitless,
		},
		{
			name:    "connection lost mid-group",
			replies: map[string]string{"RCPT TO:<gone@": "hangup"},
			want:    repeat(brief{envelope.Deferred, 0, "4.4.2"}, 4),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true, reply: rcptReplies(tt.replies)})
			a := scriptedAgent(t, s, func(c *Config) { c.ThrottlePause, c.ThrottlePauseMax = time.Millisecond, time.Millisecond })
			env := request("example.test", "a", "gone", "busy", "b")
			res := a.Deliver(ctxT(t), env)
			checkBriefs(t, tt.want, res)
			a.Close()
			conns, cmds, msgs, batches, _ := s.stats()
			if want := max(tt.conns, 1); conns != want {
				t.Errorf("connections = %d, want %d", conns, want)
			}
			wantBatch := []string{"MAIL FROM:<owner@list.test> SIZE=58 BODY=8BITMIME",
				"RCPT TO:<a@example.test>", "RCPT TO:<gone@example.test>", "RCPT TO:<busy@example.test>", "RCPT TO:<b@example.test>", "DATA"}
			if len(batches) == 0 || !cmp.Equal(batches[0], wantBatch) {
				t.Errorf("first pipelined group = %q, want %q (commands %q)", batches, wantBatch, cmds)
			}
			if len(msgs) != tt.messages {
				t.Errorf("server got %d messages, want %d: %q", len(msgs), tt.messages, msgs)
			}
			if tt.messages == 1 && tt.want[0].Status == envelope.Delivered && msgs[0] != strings.ReplaceAll(testBody, "\r\n", "\n") {
				t.Errorf("body = %q", msgs[0])
			}
		})
	}
}

func TestLockStepWithoutPipelining(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{
		ext:   []string{"8BITMIME", "SIZE"},
		reply: rcptReplies(map[string]string{"RCPT TO:<gone@": "550 5.1.1 no such user"}),
	})
	a := scriptedAgent(t, s, nil)
	res := a.Deliver(ctxT(t), request("example.test", "a", "gone", "b"))
	checkBriefs(t, []brief{sent, {envelope.Failed, 550, "5.1.1"}, sent}, res)
	// A second envelope reuses the connection with RSET, still lock-step.
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "c")))
	a.Close()
	// QUIT is sent without waiting for its reply: wait for the server.
	testutil.Poll(2*time.Second, 5*time.Millisecond, func() bool {
		_, cmds, _, _, _ := s.stats()
		return cmds[len(cmds)-1] == "QUIT"
	})
	conns, cmds, msgs, batches, violations := s.stats()
	if violations != 0 || len(batches) != 0 {
		t.Errorf("client pipelined without PIPELINING: %d early commands, %d groups", violations, len(batches))
	}
	want := []string{"EHLO fanmail.test", "MAIL FROM:<owner@list.test> SIZE=58 BODY=8BITMIME",
		"RCPT TO:<a@example.test>", "RCPT TO:<gone@example.test>", "RCPT TO:<b@example.test>", "DATA",
		"RSET", "MAIL FROM:<owner@list.test> SIZE=58 BODY=8BITMIME", "RCPT TO:<c@example.test>", "DATA", "QUIT"}
	if diff := cmp.Diff(want, cmds); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if conns != 1 || len(msgs) != 2 {
		t.Errorf("connections = %d, messages = %d; want 1 and 2", conns, len(msgs))
	}
}

func TestLockStepStopsAfterMailRefused(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{reply: rcptReplies(map[string]string{"MAIL": "451 4.7.1 greylisted"})})
	a := scriptedAgent(t, s, nil)
	checkBriefs(t, repeat(brief{envelope.Deferred, 451, "4.7.1"}, 2), a.Deliver(ctxT(t), request("example.test", "a", "b")))
	_, cmds, _, _, _ := s.stats()
	for _, c := range cmds {
		if strings.HasPrefix(c, "RCPT") || c == "DATA" {
			t.Errorf("sent %q after MAIL was refused", c)
		}
	}
}

func TestHELOFallback(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{reply: rcptReplies(map[string]string{"EHLO": "502 5.5.2 what?"})})
	a := scriptedAgent(t, s, nil)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	_, cmds, _, _, _ := s.stats()
	if cmds[1] != "HELO fanmail.test" || cmds[2] != "MAIL FROM:<owner@list.test>" {
		t.Errorf("commands = %q, want HELO then MAIL without parameters", cmds)
	}
}

func TestServerCannotTakeMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ext  []string
		env  func(*envelope.Request)
		want brief
	}{
		{"too big for SIZE", []string{"SIZE 10"}, nil, brief{envelope.Failed, 0, "5.3.4"}},
		{"8-bit without 8BITMIME", nil, func(e *envelope.Request) {
			setBody(e, "Subject: caf\xc3\xa9\r\n\r\nhi\r\n")
		}, brief{envelope.Failed, 0, "5.6.3"}},
		{"needs SMTPUTF8", []string{"8BITMIME"}, func(e *envelope.Request) {
			e.SMTPUTF8 = true
			setBody(e, "From: Jörg <j@list.test>\r\n\r\nhi\r\n")
		}, brief{envelope.Failed, 0, "5.6.7"}},
		{"UTF-8 sender", []string{"8BITMIME"}, func(e *envelope.Request) { e.Sender = "böss@list.test" }, brief{envelope.Failed, 0, "5.6.7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := request("example.test", "a")
			if tt.env != nil {
				tt.env(&env)
			}
			res, cmds := deliverScripted(t, tt.ext, env)
			checkBriefs(t, []brief{tt.want}, res)
			for _, c := range cmds {
				if strings.HasPrefix(c, "MAIL") {
					t.Errorf("sent %q for a message the server cannot take", c)
				}
			}
		})
	}
}

func TestSMTPUTF8RecipientOffered(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: []string{"8BITMIME", "SMTPUTF8", "PIPELINING"}, groups: true})
	a := scriptedAgent(t, s, nil)
	env := request("example.test", "a", "ünï")
	checkBriefs(t, repeat(sent, 2), a.Deliver(ctxT(t), env))
	_, cmds, _, _, _ := s.stats()
	if !strings.HasSuffix(cmds[1], " SMTPUTF8") {
		t.Errorf("MAIL = %q, want the SMTPUTF8 parameter", cmds[1])
	}
}

func TestReusedConnectionGoneStale(t *testing.T) {
	t.Parallel()
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	first := true
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true, reply: func(cmd string) string {
		// The server drops the cached connection on the next transaction:
		// the RSET is never answered.
		<-mu
		defer func() { mu <- struct{}{} }()
		if cmd == "RSET" && first {
			first = false
			return "hangup"
		}
		return ""
	}})
	a := scriptedAgent(t, s, nil)
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "a")))
	checkBriefs(t, []brief{sent}, a.Deliver(ctxT(t), request("example.test", "b")))
	conns, _, msgs, _, _ := s.stats()
	if conns != 2 || len(msgs) != 2 {
		t.Errorf("connections = %d, messages = %d; want 2 and 2 (one redial, nothing sent twice)", conns, len(msgs))
	}
}

func TestPipelinedGroupsAreBounded(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, reply: rcptReplies(map[string]string{"RCPT TO:<r7@": "550 5.1.1 no"})})
	a := scriptedAgent(t, s, func(c *Config) { c.RcptsPerTxn = 250 })
	var rcpts []string
	for i := range 250 {
		rcpts = append(rcpts, fmt.Sprint("r", i))
	}
	res := a.Deliver(ctxT(t), request("example.test", rcpts...))
	want := repeat(sent, 250)
	want[7] = brief{envelope.Failed, 550, "5.1.1"}
	checkBriefs(t, want, res)
	_, cmds, msgs, _, _ := s.stats()
	if len(msgs) != 1 || len(cmds) != 1+1+250+1 {
		t.Errorf("%d messages, %d commands; want 1 and %d", len(msgs), len(cmds), 253)
	}
}

// TestPipeliningTurnedOff: with NoPipelining the client keeps to lock
// step even when the server offers PIPELINING.
func TestPipeliningTurnedOff(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, reply: rcptReplies(nil)})
	a := scriptedAgent(t, s, func(c *Config) { c.NoPipelining = true })
	checkBriefs(t, []brief{sent, sent}, a.Deliver(ctxT(t), request("example.test", "a", "b")))
	a.Close()
	if _, _, msgs, batches, violations := s.stats(); violations != 0 || len(batches) != 0 || len(msgs) != 1 {
		t.Errorf("%d early commands, %d pipelined groups, %d messages; want 0, 0, 1", violations, len(batches), len(msgs))
	}
}
