package listmail

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fanmail/bounces"
	"fanmail/dsn"
	"fanmail/envelope"
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
// again: the 5xx replies they report were recorded when delivery got
// them (observe), and their other failures are the queue giving up on
// temporary ones, which never count.
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
			ok, err := s.record(ctx, in.qid, in.addr.List, settings, rc, "dsn")
			if err != nil {
				return "", err
			}
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

// recordReply records a 5xx reply delivery got for member r.Recipient
// of list.
func (s *Service) recordReply(ctx context.Context, qid, list string, r envelope.Result) {
	rc, err := bounces.FromReply(r.Recipient, true, r.Code, r.Enhanced, r.Text, r.Host)
	if err != nil {
		return
	}
	settings, err := s.settings(ctx, list)
	if err == nil {
		_, err = s.record(ctx, qid, list, settings, rc, "smtp")
	}
	if err != nil && ctx.Err() == nil {
		s.log.Error("listmail: cannot record a bounce", "qid", qid, "list", list, "rcpt", r.Recipient, "err", err)
	}
}

// policy is a list's bounce policy, from its settings.
func policy(st lists.Settings) bounces.Policy {
	p := bounces.DefaultPolicy()
	p.Threshold, p.StaleAfter = st.BounceScoreThreshold, st.BounceInfoStaleAfter
	p.Warnings, p.WarningInterval = st.BounceWarnings, st.BounceWarningsInterval
	return p
}

// record scores one failure of rc.Address on list, keeping its
// evidence, acts on the decision and reports whether the address is a
// member.
func (s *Service) record(ctx context.Context, qid, list string, st lists.Settings, rc bounces.Recipient, source string) (bool, error) {
	now := s.cfg.Now()
	p := policy(st)
	ev := lists.BounceEvent{At: now, Source: source, Action: string(rc.Action), Status: rc.Status, Severity: string(rc.Severity),
		Diagnostic: rc.Diagnostic, RemoteMTA: rc.RemoteMTA, Evidence: rc.Evidence}
	member, d, err := s.cfg.Store.RecordBounce(ctx, list, rc.Address, ev, func(state bounces.State) (bounces.State, bounces.Decision) {
		return p.Record(state, rc, now)
	})
	if errors.Is(err, lists.ErrNotMember) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.log.Info("listmail: bounce recorded", "qid", qid, "list", list, "member", member, "source", source,
		"status", rc.Status, "severity", string(rc.Severity), "verdict", d.Verdict.String(), "why", d.Reason)
	if d.Verdict == bounces.Disable {
		if err := s.disabled(ctx, list, member, rc); err != nil {
			return true, err
		}
		// The first warning (or, with none, the removal) is due now.
		if err := s.tick(ctx, list, member, p, now); err != nil {
			return true, err
		}
	}
	return true, nil
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
		s.log.Info("listmail: disabled member warned", "list", list, "member", member, "warning", d.Warning, "of", p.Warnings)
		_, err = s.send(ctx, outgoing{list: list, from: listaddr.Owner, to: member, auto: "auto-generated",
			subject: fmt.Sprintf("Your delivery from %s is disabled (warning %d of %d)", list, d.Warning, p.Warnings),
			text: fmt.Sprintf(`Mail from %s to %s has been bouncing, so delivery of the list
to this address is disabled. Unless it is enabled again, the address
is removed from the list after %d warnings, %s apart.

To have delivery enabled again, write to the list's owner at
  %s
`, list, member, p.Warnings, lists.FormatDuration(p.WarningInterval), listaddr.Of(list, listaddr.Owner, ""))})
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
	l, err := s.cfg.Store.GetList(ctx, list)
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
