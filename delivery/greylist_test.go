package delivery

import (
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/fakenet"
)

func TestGreylistedReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reply        string
		first, known bool
		want         bool
	}{
		{"451 4.7.1 Greylisted: this is a first delivery attempt, please try again later", false, false, true},
		{"450 4.2.0 <u@example.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/", false, false, true},
		{"451 4.7.1 Please try again later", true, false, true},   // a first attempt's 4.7.1
		{"451 4.7.1 Please try again later", false, false, false}, // a later attempt's: a rate limit or policy
		{"451 4.7.1 Please try again later", false, true, true},   // greylisted before
		{"450 4.7.1 Service unavailable", true, false, true},
		{"451 4.3.0 Temporary lookup failure", true, false, false},
		{"451 4.3.0 Temporary lookup failure", false, true, true}, // still within its greylisting
		{"452 4.2.2 Mailbox full", true, true, false},
		{"421 4.7.0 Too many connections", true, false, false},
		{"550 5.7.1 greylisted forever", true, false, false}, // permanent is permanent
	}
	for _, tt := range tests {
		if got := greylisted(envelope.ParseReply(tt.reply), tt.first, tt.known); got != tt.want {
			t.Errorf("greylisted(%q, first=%v, known=%v) = %v, want %v", tt.reply, tt.first, tt.known, got, tt.want)
		}
	}
}

func TestParseStatedWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want time.Duration
	}{
		{"Greylisted, please try again in 300 seconds", 300 * time.Second},
		{"Greylisted for 5 minutes", 5 * time.Minute},
		{"greylisted, retry=90", 90 * time.Second},
		{"Greylisting in action, please come back in 60s", time.Minute},
		{"Greylisted, see http://postgrey.schweikert.ch/help/example.com.html", 0},
		{"4.7.1 try again later", 0},
		{"Greylisted by server 10.0.0.1", 0},
	}
	for _, tt := range tests {
		if got := parseStatedWait(tt.text); got != tt.want {
			t.Errorf("parseStatedWait(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

// TestGreylistSchedule follows one MX group through its greylisting with
// a clock: the ladder from the first greylisting, what a refused and an
// accepted retry teach, a wait the reply states, and the hand-over to
// the queue's backoff.
func TestGreylistSchedule(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig() // 40s doubling, to 30m
	g := newGreylist()
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	grey := envelope.ParseReply("451 4.7.1 Greylisted, please try again later")
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(what string, now time.Time, rcpt string, first bool, r envelope.Reply, want time.Duration, wantOK bool) {
		t.Helper()
		got, ok := g.deferred(now, "mx.example.test", "owner@list.test", rcpt, first, r, &cfg)
		if ok != wantOK || got != want {
			t.Errorf("%s: retry in %v (%v), want %v (%v)", what, got, ok, want, wantOK)
		}
	}
	step("first greylisting", at(0), "a", true, grey, 40*time.Second, true)
	step("refused at 41s", at(41*time.Second), "a", false, grey, 39*time.Second, true) // next at 80s
	if !g.watching("mx.example.test") {
		t.Fatal("the group is not watched with a recipient greylisted")
	}
	g.delivered(at(81*time.Second), "mx.example.test", "owner@list.test", "a")
	// The window is in (41s, 81s]: a new recipient goes straight to 81s.
	step("learned window", at(100*time.Second), "b", true, grey, 81*time.Second, true)
	// A stated wait wins.
	step("stated wait", at(0), "c", true, envelope.ParseReply("450 4.2.0 Greylisted, try again in 300 seconds"), 301*time.Second, true)
	// The ladder ends at GreylistRetryMax; then the queue's backoff.
	step("refused at 25m", at(25*time.Minute), "c", false, grey, 0, false) // 40s·2^6 = 42m40s > 30m
	step("not greylisting", at(0), "d", false, envelope.ParseReply("451 4.3.0 try later"), 0, false)
}

// TestGreylistedRecipientRetryAfter: delivery gives a greylisted recipient
// the schedule's RetryAfter, and takes it once the window has passed.
func TestGreylistedRecipientRetryAfter(t *testing.T) {
	t.Parallel()
	w, a := exampleAgent(t, func(cfg *Config) {
		cfg.GreylistRetry, cfg.GreylistRetryMax = 60*time.Millisecond, time.Minute
	}, fakenet.SinkOptions{Greylist: 50 * time.Millisecond})
	res := a.Deliver(ctxT(t), request("example.test", "a", "b"))
	checkBriefs(t, repeat(brief{envelope.Deferred, 451, "4.7.1"}, 2), res)
	for _, r := range res {
		if r.RetryAfter <= 0 || r.RetryAfter > 60*time.Millisecond {
			t.Errorf("%s: RetryAfter %v, want at most the first retry, 60ms", r.Recipient, r.RetryAfter)
		}
	}
	time.Sleep(res[0].RetryAfter) // what the queue does
	env := request("example.test", "a", "b")
	env.Attempts = 1
	checkBriefs(t, repeat(sent, 2), a.Deliver(ctxT(t), env))
	if n := w.sinks[0].Stats().Greylisted; n != 2 {
		t.Errorf("greylisted %d times, want 2 (once each)", n)
	}
}
