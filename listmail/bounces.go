package listmail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fanmail/bounces"
	"fanmail/dsn"
	"fanmail/listaddr"
	"fanmail/lists"
)

// bounce reads a message to the list's bounce address (or, from the
// null sender, to its owner: toOwner) and records each failure that
// names a member. What names no member goes to the owner, from the null
// sender (so its own failure ends there), and so does whatever came to
// the owner's address.
//
// fanmail's own DSNs (their Reporting-MTA is this host) are not scored
// again: the permanent failures they report were recorded when delivery
// had them (observe), and their other failures are the queue giving up
// on temporary ones, which never count.
func (s *Service) bounce(ctx context.Context, in incoming, toOwner bool) (string, error) {
	rcpt := in.rcpt
	if in.addr.Role != listaddr.Bounces {
		rcpt = listaddr.Of(in.addr.List, listaddr.Bounces, "")
	}
	ev, err := bounces.Examine(rcpt, in.open())
	if err != nil && (errors.Is(err, bounces.ErrMalformedVERP) || errors.Is(err, bounces.ErrNotBounceAddress)) {
		// A VERP form package bounces cannot read: the bounce is read
		// as one to the plain address.
		s.log.Warn("listmail: bounce address not understood; read as the list's", "qid", in.qid, "rcpt", rcpt, "err", err)
		ev, err = bounces.Examine(listaddr.Of(in.addr.List, listaddr.Bounces, ""), in.open())
	}
	if err != nil {
		return "", fmt.Errorf("read bounce: %w", err)
	}
	settings, err := s.settings(ctx, in.addr.List)
	if err != nil {
		return "", err
	}
	own := ev.Report.ReportingMTA != "" && strings.EqualFold(ev.Report.ReportingMTA, s.cfg.Hostname)
	var recorded, unmatched, delays int
	var score []failure
	for _, rc := range ev.Members {
		switch {
		case rc.Action != dsn.Failed:
			delays++ // a delay is not a bounce
		case own:
			ok, err := s.cfg.Store.IsMember(ctx, in.addr.List, rc.Address)
			if err != nil {
				return "", err
			}
			if !ok {
				unmatched++
			}
		default:
			score = append(score, failure{qid: in.qid, rc: rc, source: "dsn"})
		}
	}
	if len(score) > 0 {
		members, err := s.recordAll(ctx, in.addr.List, settings, score)
		if err != nil {
			return "", err
		}
		for _, ok := range members {
			if ok {
				recorded++
			} else {
				unmatched++
			}
		}
	}
	what := fmt.Sprintf("bounce (%s): %d recorded, %d naming no member, %d delays", orNone(string(ev.Report.Format)), recorded, unmatched, delays)
	s.log.Info("listmail: bounce read", "qid", in.qid, "list", in.addr.List, "format", string(ev.Report.Format),
		"reporting_mta", ev.Report.ReportingMTA, "own_dsn", own, "recorded", recorded, "no_member", unmatched, "delays", delays)
	if toOwner || unmatched > 0 || len(ev.Members) == 0 {
		fwd, err := s.forward(ctx, in, "")
		if err != nil {
			return "", err
		}
		what += "; " + fwd
	}
	return what, nil
}

// policy is a list's bounce policy, from its settings.
func policy(st lists.Settings) bounces.Policy {
	p := bounces.DefaultPolicy()
	p.Threshold, p.StaleAfter = st.BounceScoreThreshold, st.BounceInfoStaleAfter
	p.Warnings, p.WarningInterval = st.BounceWarnings, st.BounceWarningsInterval
	return p
}

// failure is one failure to score against a member.
type failure struct {
	qid    string // of the message that failed, for the log
	rc     bounces.Recipient
	source string // dsn or smtp
}

// recordAll scores failures of list's members, keeping their evidence,
// in one store transaction, acts on the decisions and reports for each
// whether its address is a member.
func (s *Service) recordAll(ctx context.Context, list string, st lists.Settings, fs []failure) ([]bool, error) {
	now := s.cfg.Now()
	p := policy(st)
	recs := make([]lists.BounceRecord, len(fs))
	for i, f := range fs {
		rc := f.rc
		recs[i] = lists.BounceRecord{Address: rc.Address, Event: lists.BounceEvent{At: now, Source: f.source,
			Action: string(rc.Action), Status: rc.Status, Severity: string(rc.Severity), Diagnostic: rc.Diagnostic,
			RemoteMTA: rc.RemoteMTA, Evidence: rc.Evidence},
			Score: func(state bounces.State) (bounces.State, bounces.Decision) { return p.Record(state, rc, now) }}
	}
	res, err := s.cfg.Store.RecordBounces(ctx, list, recs)
	if err != nil {
		return nil, err
	}
	members := make([]bool, len(fs))
	var errs []error
	for i, r := range res {
		f := fs[i]
		if r.NotMember {
			continue
		}
		members[i] = true
		s.log.Info("listmail: bounce recorded", "qid", f.qid, "list", list, "member", r.Member, "source", f.source,
			"status", f.rc.Status, "severity", string(f.rc.Severity), "verdict", r.Decision.Verdict.String(), "why", r.Decision.Reason)
		if r.Decision.Verdict != bounces.Disable {
			continue
		}
		if err := s.disabled(ctx, list, r.Member, f.rc); err != nil {
			errs = append(errs, err)
			continue
		}
		// The first warning (or, with none, the removal) is due now.
		if err := s.tick(ctx, list, r.Member, p, now); err != nil {
			errs = append(errs, err)
		}
	}
	return members, errors.Join(errs...)
}

// disabled tells the owner that member's delivery is disabled.
func (s *Service) disabled(ctx context.Context, list, member string, rc bounces.Recipient) error {
	s.log.Warn("listmail: member's delivery disabled by bounces", "list", list, "member", member, "status", rc.Status)
	return s.toOwner(ctx, list, fmt.Sprintf("%s: delivery to %s disabled by bounces", list, member),
		fmt.Sprintf(`Delivery of %s to its member %s is disabled: the member's bounce
score reached the list's bounce_score_threshold. The member stays on
the list and gets no posts; unless delivery is enabled again, the
member is removed after the warnings it is sent.

The last bounce:
  Status:     %s (%s)
  Diagnostic: %s
  Remote MTA: %s

On the server: fanmail member show %s %s
               fanmail member enable %s %s
`, list, member, rc.Status, rc.Severity, rc.Diagnostic, orNone(rc.RemoteMTA), list, member, list, member))
}

// tick applies the passage of time to member's bounce state: a warning
// or the removal that is due.
func (s *Service) tick(ctx context.Context, list, member string, p bounces.Policy, now time.Time) error {
	d, err := s.cfg.Store.UpdateBounce(ctx, list, member, func(st bounces.State) (bounces.State, bounces.Decision) {
		return p.Tick(st, now)
	})
	if errors.Is(err, lists.ErrNotMember) || errors.Is(err, lists.ErrNoList) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	switch d.Verdict {
	case bounces.Warn:
		// As Mailman does, the warning carries a confirmation: a reply
		// enables delivery again, until the next warning.
		token, _, err := s.cfg.Store.OpenRequest(ctx, list, member, lists.RequestEnable, p.WarningInterval)
		if err != nil {
			return err
		}
		confirm := listaddr.Of(list, listaddr.Confirm, token)
		s.log.Info("listmail: disabled member warned", "list", list, "member", member, "warning", d.Warning, "of", p.Warnings)
		_, err = s.send(ctx, outgoing{list: list, from: listaddr.Owner, to: member, auto: "auto-generated", replyTo: confirm,
			subject: fmt.Sprintf("Your delivery from %s is disabled (warning %d of %d)", list, d.Warning, p.Warnings),
			text: fmt.Sprintf(`Mail from %s to %s has been bouncing, so delivery of the list
to this address is disabled. Unless it is enabled again, the address
is removed from the list after %d warnings, %s apart.

To enable delivery again, reply to this message; any reply will do.
It goes to
  %s
For anything else, write to the list's owner at
  %s
`, list, member, p.Warnings, lists.FormatDuration(p.WarningInterval), confirm, listaddr.Of(list, listaddr.Owner, ""))})
		return err
	case bounces.Remove:
		s.log.Warn("listmail: member removed after bounces", "list", list, "member", member, "why", d.Reason)
		return s.toOwner(ctx, list, fmt.Sprintf("%s: %s removed after bounces", list, member),
			fmt.Sprintf("%s was removed from %s: its delivery was disabled by bounces\nand it did not recover (%s).\n", member, list, d.Reason))
	}
	return nil
}

// toOwner sends the list's owner a notice; a list without an owner
// gets a log line instead.
func (s *Service) toOwner(ctx context.Context, list, subject, text string) error {
	l, err := s.cfg.Store.FindList(ctx, list)
	if err != nil {
		return err
	}
	if l.Owner == "" {
		s.log.Warn("listmail: the list has no owner to tell", "list", list, "subject", subject)
		return nil
	}
	_, err = s.send(ctx, outgoing{list: list, from: listaddr.Owner, to: l.Owner, auto: "auto-generated", subject: subject, text: text})
	return err
}
