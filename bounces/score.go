package bounces

import (
	"errors"
	"fmt"
	"time"

	"fanmail/dsn"
)

// Scoring follows Mailman 3 (src/mailman/model/bounce.py,
// BounceProcessor.process_event and send_warnings_and_remove;
// src/mailman/model/member.py, MembershipManager.memberships_pending_*),
// with its defaults from src/mailman/styles/base.py:
//
//   - A member's score counts at most one bounce per (UTC) day, so that
//     one burst cannot disable anyone; a further bounce on the same day
//     only moves the last-bounce time.
//   - If the last bounce is older than StaleAfter, the score restarts at
//     this bounce's weight ("decay": a member who stops bouncing for a
//     week is back to a clean slate with the next bounce).
//   - At Threshold the member is disabled. A disabled member's further
//     bounces are residue of earlier mail and are ignored.
//   - A disabled member gets Warnings warnings, the first right away and
//     each further one WarningInterval after the previous; one interval
//     after the last, the member is removed. With no warnings, the member
//     is removed at once.
//
// Weights: Mailman's bounce help (Mailman 2.1, Mailman/Gui/Bounce.py:
// "Hard bounces increment by 1 while soft bounces increment by 0.5")
// gives hard bounces 1 and soft bounces 0.5; Mailman 3's code scores every
// registered bounce 1 and drops temporary failures before they are
// registered. fanmail uses the documented weights, since it tells hard
// from soft (see Classify), and like Mailman never scores a delay (an
// action other than "failed"): a transient 4.x.x delay is not evidence.
//
// Deviations: Mailman can send a probe instead of disabling
// (verp_probes, off by default); fanmail has no probes. Bounces dated
// before the last scored one (out of order) are ignored rather than
// moving the last-bounce time back.

// Policy is one list's bounce settings, named as Mailman names them.
type Policy struct {
	Threshold       float64       // bounce_score_threshold
	StaleAfter      time.Duration // bounce_info_stale_after
	Warnings        int           // bounce_you_are_disabled_warnings
	WarningInterval time.Duration // bounce_you_are_disabled_warnings_interval
	HardWeight      float64       // score of a hard failure
	SoftWeight      float64       // score of a soft failure
}

const day = 24 * time.Hour

// DefaultPolicy is Mailman 3's defaults (styles/base.py): threshold 5,
// stale after 7 days, 3 warnings 7 days apart; hard 1.0, soft 0.5.
func DefaultPolicy() Policy {
	return Policy{
		Threshold:       5,
		StaleAfter:      7 * day,
		Warnings:        3,
		WarningInterval: 7 * day,
		HardWeight:      1,
		SoftWeight:      0.5,
	}
}

// Validate reports the first impossible setting.
func (p Policy) Validate() error {
	switch {
	case !(p.Threshold > 0):
		return fmt.Errorf("bounce score threshold %v: must be above 0", p.Threshold)
	case p.StaleAfter < day:
		return fmt.Errorf("bounce info stale after %v: must be at least a day (the score counts one bounce per day)", p.StaleAfter)
	case p.Warnings < 0:
		return fmt.Errorf("disabled warnings %d: must be 0 or more", p.Warnings)
	case p.Warnings > 0 && p.WarningInterval <= 0:
		return fmt.Errorf("disabled warnings interval %v: must be above 0", p.WarningInterval)
	case !(p.SoftWeight >= 0) || !(p.HardWeight >= p.SoftWeight) || p.HardWeight <= 0:
		return errors.New("bounce weights: need 0 <= soft <= hard and hard above 0")
	}
	return nil
}

// State is one member's bounce state, kept by the list store.
type State struct {
	Score        float64
	LastBounce   time.Time // the last bounce seen, scored or not; zero if none
	Disabled     time.Time // when delivery was disabled by bounces; zero while enabled
	WarningsSent int       // warnings sent since Disabled
	LastWarning  time.Time // when the last warning was sent; zero if none
}

// A member re-enabled by themselves or the owner starts again from the
// zero State.

// Verdict is what the caller must do for a member.
type Verdict int

const (
	Nothing Verdict = iota
	Disable         // disable delivery (and tell the owner, if the list wants)
	Warn            // send the member warning Decision.Warning
	Remove          // unsubscribe the member (and tell the owner, if the list wants)
)

func (v Verdict) String() string {
	switch v {
	case Disable:
		return "disable"
	case Warn:
		return "warn"
	case Remove:
		return "remove"
	}
	return "nothing"
}

// Decision is a Verdict with what the log needs.
type Decision struct {
	Verdict Verdict
	Warning int    // for Warn: which warning, from 1
	Reason  string // why, for the log
}

// Weight is what one failure adds to a score: 0 for a delay.
func (p Policy) Weight(rc Recipient) float64 {
	if rc.Action != dsn.Failed {
		return 0
	}
	if rc.Severity == Hard {
		return p.HardWeight
	}
	return p.SoftWeight
}

// Record scores one bounce of a member at time at and returns the new
// state and what to do. It is a pure function: the caller stores the
// state after acting on the decision.
func (p Policy) Record(s State, rc Recipient, at time.Time) (State, Decision) {
	w := p.Weight(rc)
	switch {
	case w == 0:
		return s, Decision{Reason: fmt.Sprintf("%s %s: not scored", rc.Action, rc.Status)}
	case !s.Disabled.IsZero():
		return s, Decision{Reason: "residual bounce: delivery already disabled"}
	case !s.LastBounce.IsZero() && sameDay(s.LastBounce, at):
		if at.After(s.LastBounce) {
			s.LastBounce = at
		}
		return s, Decision{Reason: fmt.Sprintf("already scored a bounce on %s; score %g", at.UTC().Format(time.DateOnly), s.Score)}
	case at.Before(s.LastBounce):
		return s, Decision{Reason: "bounce older than the last one scored: not scored"}
	}
	if s.LastBounce.IsZero() || s.LastBounce.Before(at.Add(-p.StaleAfter)) {
		s.Score = w // first bounce, or the last one is stale: start again
	} else {
		s.Score += w
	}
	s.LastBounce = at
	// A small tolerance, so that weights like 0.1 reach their threshold.
	if s.Score < p.Threshold-1e-9 {
		return s, Decision{Reason: fmt.Sprintf("score %g below threshold %g", s.Score, p.Threshold)}
	}
	s.Disabled, s.WarningsSent, s.LastWarning = at, 0, time.Time{}
	return s, Decision{Verdict: Disable, Reason: fmt.Sprintf("score %g reached threshold %g", s.Score, p.Threshold)}
}

// Tick is the periodic check of a member at time now: a disabled member
// is due a warning or, after the last, removal. Call it for disabled
// members (right after Disable, too: the first warning is due at once).
func (p Policy) Tick(s State, now time.Time) (State, Decision) {
	if s.Disabled.IsZero() {
		return s, Decision{Reason: "delivery enabled"}
	}
	due := s.LastWarning.IsZero() || !now.Before(s.LastWarning.Add(p.WarningInterval))
	switch {
	case s.WarningsSent < p.Warnings && due:
		s.WarningsSent++
		s.LastWarning = now
		return s, Decision{Verdict: Warn, Warning: s.WarningsSent,
			Reason: fmt.Sprintf("disabled since %s: warning %d of %d", s.Disabled.UTC().Format(time.DateOnly), s.WarningsSent, p.Warnings)}
	case s.WarningsSent >= p.Warnings && (p.Warnings == 0 || due):
		return s, Decision{Verdict: Remove, Reason: fmt.Sprintf("disabled since %s: %d warnings sent", s.Disabled.UTC().Format(time.DateOnly), s.WarningsSent)}
	}
	return s, Decision{Reason: fmt.Sprintf("next warning or removal at %s", s.LastWarning.Add(p.WarningInterval).UTC().Format(time.RFC3339))}
}

// NextTick returns when Tick will next have something to do for s, so a
// caller can schedule it; false if nothing is pending.
func (p Policy) NextTick(s State) (time.Time, bool) {
	if s.Disabled.IsZero() {
		return time.Time{}, false
	}
	if s.LastWarning.IsZero() {
		return s.Disabled, true // the first warning (or, with none, removal) is due at once
	}
	return s.LastWarning.Add(p.WarningInterval), true
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.UTC().Date()
	by, bm, bd := b.UTC().Date()
	return ay == by && am == bm && ad == bd
}
