package bounces

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/dsn"
)

var (
	t0   = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday morning
	hard = Recipient{Address: "ann@example.com", Action: dsn.Failed, Status: "5.1.1", Severity: Hard}
	soft = Recipient{Address: "ann@example.com", Action: dsn.Failed, Status: "5.2.2", Severity: Soft}
	late = Recipient{Address: "ann@example.com", Action: dsn.Delayed, Status: "4.4.1", Severity: Soft}
)

// step is one event in a scoring scenario: a bounce (rc set) or a
// periodic check (rc zero), at a time, and what must follow.
type step struct {
	at      time.Time
	rc      Recipient
	verdict Verdict
	warning int
	score   float64
}

func days(n float64) time.Duration { return time.Duration(n * float64(day)) }

func TestScoring(t *testing.T) {
	bounce := func(at time.Time, rc Recipient, v Verdict, score float64) step {
		return step{at: at, rc: rc, verdict: v, score: score}
	}
	tick := func(at time.Time, v Verdict, warning int, score float64) step {
		return step{at: at, verdict: v, warning: warning, score: score}
	}
	var fiveHard []step
	for i := 0; i < 4; i++ {
		fiveHard = append(fiveHard, bounce(t0.Add(days(float64(i))), hard, Nothing, float64(i+1)))
	}
	fiveHard = append(fiveHard, bounce(t0.Add(days(4)), hard, Disable, 5))

	for _, tc := range []struct {
		name   string
		policy Policy
		steps  []step
	}{
		{"five hard bounces on five days disable", DefaultPolicy(), fiveHard},
		{"a burst on one day counts once", DefaultPolicy(), []step{
			bounce(t0, hard, Nothing, 1),
			bounce(t0.Add(time.Minute), hard, Nothing, 1),
			bounce(t0.Add(10*time.Hour), hard, Nothing, 1),
			bounce(t0.Add(days(1)), hard, Nothing, 2),
		}},
		{"days are UTC days, not 24 hours", DefaultPolicy(), []step{
			bounce(t0.Add(14*time.Hour+59*time.Minute), hard, Nothing, 1), // 23:59 UTC
			bounce(t0.Add(15*time.Hour+time.Minute), hard, Nothing, 2),    // 00:01 UTC next day
		}},
		{"soft bounces weigh half", DefaultPolicy(), []step{
			bounce(t0, soft, Nothing, 0.5),
			bounce(t0.Add(days(1)), soft, Nothing, 1),
			bounce(t0.Add(days(2)), hard, Nothing, 2),
		}},
		{"ten soft days disable", DefaultPolicy(), func() []step {
			var s []step
			for i := 0; i < 9; i++ {
				s = append(s, bounce(t0.Add(days(float64(i))), soft, Nothing, 0.5*float64(i+1)))
			}
			return append(s, bounce(t0.Add(days(9)), soft, Disable, 5))
		}()},
		{"delays never count", DefaultPolicy(), []step{
			bounce(t0, late, Nothing, 0),
			bounce(t0.Add(days(1)), late, Nothing, 0),
			bounce(t0.Add(days(2)), hard, Nothing, 1),
			bounce(t0.Add(days(3)), late, Nothing, 1),
		}},
		{"stale score restarts", DefaultPolicy(), []step{
			bounce(t0, hard, Nothing, 1),
			bounce(t0.Add(days(1)), hard, Nothing, 2),
			bounce(t0.Add(days(8)), hard, Nothing, 3),  // 7 days after the last: not yet stale
			bounce(t0.Add(days(16)), hard, Nothing, 1), // 8 days after the last: stale
			bounce(t0.Add(days(17)), soft, Nothing, 1.5),
		}},
		{"a same-day bounce keeps the score fresh", DefaultPolicy(), []step{
			bounce(t0, hard, Nothing, 1),
			bounce(t0.Add(10*time.Hour), hard, Nothing, 1), // moves the last bounce to 19:00
			bounce(t0.Add(days(7)+9*time.Hour), hard, Nothing, 2),
		}},
		{"out of order bounce ignored", DefaultPolicy(), []step{
			bounce(t0.Add(days(2)), hard, Nothing, 1),
			bounce(t0, hard, Nothing, 1),
		}},
		{"warnings then removal", DefaultPolicy(), append(append([]step(nil), fiveHard...),
			tick(t0.Add(days(4)), Warn, 1, 5),
			tick(t0.Add(days(5)), Nothing, 0, 5),
			bounce(t0.Add(days(5)), hard, Nothing, 5), // residual: ignored
			tick(t0.Add(days(11)-time.Second), Nothing, 0, 5),
			tick(t0.Add(days(11)), Warn, 2, 5),
			tick(t0.Add(days(18)), Warn, 3, 5),
			tick(t0.Add(days(25)-time.Second), Nothing, 0, 5),
			tick(t0.Add(days(25)), Remove, 0, 5),
		)},
		{"no warnings: removal at once", Policy{Threshold: 2, StaleAfter: days(7), HardWeight: 1, SoftWeight: 0.5}, []step{
			bounce(t0, hard, Nothing, 1),
			bounce(t0.Add(days(1)), hard, Disable, 2),
			tick(t0.Add(days(1)), Remove, 0, 2),
		}},
		{"tick on an enabled member does nothing", DefaultPolicy(), []step{
			bounce(t0, hard, Nothing, 1),
			tick(t0.Add(days(30)), Nothing, 0, 1),
		}},
		{"fractional weights reach the threshold", Policy{Threshold: 0.3, StaleAfter: days(7), HardWeight: 0.1, SoftWeight: 0.1}, []step{
			bounce(t0, hard, Nothing, 0.1),
			bounce(t0.Add(days(1)), hard, Nothing, 0.2),
			bounce(t0.Add(days(2)), hard, Disable, 0.30000000000000004),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.policy.Validate(); err != nil {
				t.Fatal(err)
			}
			var s State
			for i, st := range tc.steps {
				var d Decision
				if st.rc.Address != "" {
					s, d = tc.policy.Record(s, st.rc, st.at)
				} else {
					s, d = tc.policy.Tick(s, st.at)
				}
				if d.Verdict != st.verdict || d.Warning != st.warning || s.Score != st.score {
					t.Fatalf("step %d at %s: got %s (warning %d, %q), score %g; want %s (warning %d), score %g",
						i, st.at.Format(time.RFC3339), d.Verdict, d.Warning, d.Reason, s.Score, st.verdict, st.warning, st.score)
				}
				if d.Reason == "" {
					t.Errorf("step %d: decision without a reason", i)
				}
			}
		})
	}
}

// TestScoringState checks the whole state after a disable and the
// warnings, as the list store would keep it.
func TestScoringState(t *testing.T) {
	p := DefaultPolicy()
	s := State{Score: 4, LastBounce: t0}
	s, d := p.Record(s, hard, t0.Add(days(1)))
	want := State{Score: 5, LastBounce: t0.Add(days(1)), Disabled: t0.Add(days(1))}
	if d.Verdict != Disable || !cmp.Equal(want, s) {
		t.Fatalf("after the disabling bounce: %s, %s", d.Verdict, cmp.Diff(want, s))
	}
	if next, ok := p.NextTick(s); !ok || !next.Equal(t0.Add(days(1))) {
		t.Errorf("NextTick after disable = %v, %v", next, ok)
	}
	s, d = p.Tick(s, t0.Add(days(1)+time.Hour))
	want.WarningsSent, want.LastWarning = 1, t0.Add(days(1)+time.Hour)
	if d.Verdict != Warn || d.Warning != 1 || !cmp.Equal(want, s) {
		t.Fatalf("first warning: %s %d, %s", d.Verdict, d.Warning, cmp.Diff(want, s))
	}
	if next, ok := p.NextTick(s); !ok || !next.Equal(t0.Add(days(8)+time.Hour)) {
		t.Errorf("NextTick after warning = %v, %v", next, ok)
	}
	if _, ok := p.NextTick(State{Score: 3}); ok {
		t.Error("NextTick for an enabled member")
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	for name, mod := range map[string]func(*Policy){
		"zero threshold":        func(p *Policy) { p.Threshold = 0 },
		"stale under a day":     func(p *Policy) { p.StaleAfter = time.Hour },
		"negative warnings":     func(p *Policy) { p.Warnings = -1 },
		"warnings, no interval": func(p *Policy) { p.WarningInterval = 0 },
		"soft above hard":       func(p *Policy) { p.SoftWeight = 2 },
		"negative soft":         func(p *Policy) { p.SoftWeight = -1 },
		"zero hard":             func(p *Policy) { p.HardWeight, p.SoftWeight = 0, 0 },
	} {
		p := DefaultPolicy()
		mod(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDefaultPolicyIsMailmans(t *testing.T) {
	// Mailman 3, src/mailman/styles/base.py.
	want := Policy{Threshold: 5, StaleAfter: 7 * 24 * time.Hour, Warnings: 3, WarningInterval: 7 * 24 * time.Hour,
		HardWeight: 1, SoftWeight: 0.5}
	if diff := cmp.Diff(want, DefaultPolicy()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
