package listmail

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fanmail/listaddr"
	"fanmail/lists"
)

// command carries out a command sent to LIST-request (the first word of
// the subject, else of the first body line), LIST-subscribe or
// LIST-unsubscribe, and returns what it did, for the log.
func (s *Service) command(ctx context.Context, in incoming) (string, error) {
	p, _ := readMessage(in.open())
	if why := automatic(in.sender, p.header); why != "" {
		s.log.Info("listmail: command from an automatic message not taken (RFC 3834)", "qid", in.qid, "list", in.addr.List, "why", why)
		return "not answered: " + why, nil
	}
	who := p.from
	if who == "" {
		who = in.sender
	}
	settings, err := s.settings(ctx, in.addr.List)
	if err != nil {
		return "", err
	}
	cmd := ""
	switch in.addr.Role {
	case listaddr.Subscribe:
		cmd = "subscribe"
	case listaddr.Unsubscribe:
		cmd = "unsubscribe"
	default:
		if cmd = commandWord(p.subject); cmd == "" {
			cmd = commandWord(p.firstLine)
		}
	}
	l := in.addr.List
	s.log.Info("listmail: command", "qid", in.qid, "list", l, "from", who, "command", orNone(cmd))
	switch cmd {
	case "subscribe", "unsubscribe":
		return s.request(ctx, in, settings, who, lists.RequestAction(cmd))
	case "help":
		return s.answer(ctx, settings, outgoing{list: l, to: who, subject: "Help for " + l, text: helpText(l, settings, "")})
	}
	return s.answer(ctx, settings, outgoing{list: l, to: who, subject: "Help for " + l,
		text: helpText(l, settings, "No command was found in your message (the first word of its subject or of its first line).\n\n")})
}

// request asks who to confirm a change of their membership.
func (s *Service) request(ctx context.Context, in incoming, settings lists.Settings, who string, action lists.RequestAction) (string, error) {
	l := in.addr.List
	member, err := s.cfg.Store.IsMember(ctx, l, who)
	if err != nil {
		return "", err
	}
	var text string
	switch {
	case action == lists.RequestSubscribe && settings.SubscribePolicy == lists.SubscribeClosed:
		text = fmt.Sprintf("%s takes no subscriptions by mail. To ask its owner, write to %s.\n", l, listaddr.Of(l, listaddr.Owner, ""))
	case action == lists.RequestSubscribe && member:
		text = fmt.Sprintf("%s is already a member of %s; nothing was changed.\n", who, l)
	case action == lists.RequestUnsubscribe && !member:
		text = fmt.Sprintf("%s is not a member of %s; nothing was changed.\n", who, l)
	}
	if text != "" {
		return s.answer(ctx, settings, outgoing{list: l, to: who, subject: fmt.Sprintf("Your %s request for %s", action, l), text: text})
	}
	// The answer is counted first: a request nobody may be told of is
	// not opened.
	ok, err := s.cfg.Store.AllowAnswer(ctx, who, s.cfg.Now(), settings.MaxAutoresponses)
	if err != nil {
		return "", err
	}
	if !ok {
		s.log.Warn("listmail: answers to this address are at their daily limit; request dropped", "qid", in.qid, "list", l, "to", who, "command", string(action))
		return "not answered: daily limit of answers to " + who, nil
	}
	token, r, err := s.cfg.Store.OpenRequest(ctx, l, who, action, settings.ConfirmExpire)
	if err != nil {
		return "", err
	}
	confirm := listaddr.Of(l, listaddr.Confirm, token)
	qid, err := s.send(ctx, outgoing{list: l, from: listaddr.Request, to: r.Address, auto: "auto-replied", replyTo: confirm,
		subject: fmt.Sprintf("Confirm your %s request for %s", action, l), text: confirmText(l, r, confirm, settings)})
	if err != nil {
		return "", err
	}
	s.log.Info("listmail: confirmation sent", "qid", qid, "list", l, "to", r.Address, "action", string(action), "request", r.ID)
	return fmt.Sprintf("%s request %d: confirmation sent to %s as %s", action, r.ID, r.Address, qid), nil
}

// confirm carries out a reply to LIST-confirm+TOKEN.
func (s *Service) confirm(ctx context.Context, in incoming) (string, error) {
	p, _ := readMessage(in.open())
	l := in.addr.List
	if why := automatic(in.sender, p.header); why != "" {
		// A vacation program or a challenge-response system must not
		// confirm what its owner never asked for.
		s.log.Info("listmail: confirmation from an automatic message not taken (RFC 3834)", "qid", in.qid, "list", l, "why", why)
		return "not taken: " + why, nil
	}
	who := p.from
	if who == "" {
		who = in.sender
	}
	settings, err := s.settings(ctx, l)
	if err != nil {
		return "", err
	}
	c, err := s.cfg.Store.UseConfirmToken(ctx, l, in.addr.Token, who, settings.ConfirmExpire)
	var used *lists.ConfirmUsedError
	switch {
	case errors.Is(err, lists.ErrBadToken):
		return s.answer(ctx, settings, outgoing{list: l, to: who, subject: "Your confirmation for " + l,
			text: fmt.Sprintf("The confirmation address you wrote to is unknown or has expired; nothing was changed.\nTo try again, send \"subscribe\" or \"unsubscribe\" to %s.\n", listaddr.Of(l, listaddr.Request, ""))})
	case errors.As(err, &used):
		return s.answer(ctx, settings, outgoing{list: l, to: who, subject: "Your confirmation for " + l,
			text: "The confirmation address you wrote to was already used; nothing was changed.\n"})
	case err != nil:
		return "", err
	}
	r := c.Request
	s.log.Info("listmail: request confirmed", "qid", in.qid, "list", l, "request", r.ID, "address", r.Address,
		"action", string(r.Action), "by", who, "approved", c.Approved, "changed", c.Changed, "approvers", len(c.Approvers))
	if c.Waiting {
		if len(c.Approvers) == 0 {
			s.log.Warn("listmail: a subscription waits for approval, but the list has no moderator and no owner; it will lapse",
				"list", l, "address", r.Address, "request", r.ID)
		}
		for _, a := range c.Approvers {
			confirm := listaddr.Of(l, listaddr.Confirm, a.Token)
			if _, err := s.send(ctx, outgoing{list: l, from: listaddr.Owner, to: a.Address, auto: "auto-generated", replyTo: confirm,
				subject: fmt.Sprintf("%s: subscription of %s waits for approval", l, r.Address),
				text:    approveText(l, r, confirm)}); err != nil {
				return "", err
			}
		}
		return s.answer(ctx, settings, outgoing{list: l, to: r.Address, subject: "Your subscription to " + l,
			text: fmt.Sprintf("Thank you: %s has confirmed. A moderator of %s now decides on the subscription;\nyou will hear when it is approved.\n", r.Address, l)})
	}
	var subject, text string
	switch {
	case !c.Changed && r.Action == lists.RequestSubscribe:
		subject, text = "Your subscription to "+l, fmt.Sprintf("%s is already a member of %s; nothing was changed.\n", r.Address, l)
	case !c.Changed && r.Action == lists.RequestUnsubscribe:
		subject, text = "Your unsubscription from "+l, fmt.Sprintf("%s is not a member of %s; nothing was changed.\n", r.Address, l)
	case !c.Changed:
		subject, text = "Your delivery from "+l, fmt.Sprintf("Delivery of %s to %s was not disabled; nothing was changed.\n", l, r.Address)
	case r.Action == lists.RequestSubscribe:
		subject, text = "Welcome to "+l, welcomeText(l, r.Address)
	case r.Action == lists.RequestUnsubscribe:
		subject, text = "You have left "+l, fmt.Sprintf("%s is no longer a member of %s.\nTo subscribe again, send \"subscribe\" to %s.\n", r.Address, l, listaddr.Of(l, listaddr.Request, ""))
	default:
		subject, text = "Delivery re-enabled: "+l, fmt.Sprintf("Delivery of %s to %s is enabled again.\n", l, r.Address)
	}
	return s.answer(ctx, settings, outgoing{list: l, to: r.Address, subject: subject, text: text})
}

// answer sends an answer to a command, if the address may get one more
// today, and says what happened.
func (s *Service) answer(ctx context.Context, settings lists.Settings, o outgoing) (string, error) {
	ok, err := s.cfg.Store.AllowAnswer(ctx, o.to, s.cfg.Now(), settings.MaxAutoresponses)
	if err != nil {
		return "", err
	}
	if !ok {
		s.log.Warn("listmail: answers to this address are at their daily limit; not answered", "list", o.list, "to", o.to, "subject", o.subject)
		return "not answered: daily limit of answers to " + o.to, nil
	}
	o.from, o.auto = listaddr.Request, "auto-replied"
	qid, err := s.send(ctx, o)
	if err != nil {
		return "", err
	}
	s.log.Info("listmail: answer sent", "qid", qid, "list", o.list, "to", o.to, "subject", o.subject)
	return fmt.Sprintf("answered %s as %s", o.to, qid), nil
}

func (s *Service) settings(ctx context.Context, list string) (lists.Settings, error) {
	st, err := s.cfg.Store.Settings(ctx, list)
	if err != nil {
		return st, fmt.Errorf("settings of %s: %w", list, err)
	}
	return st, nil
}

func helpText(l string, st lists.Settings, note string) string {
	sub := "Subscribing needs your confirmation: you get a message, and your reply to it completes the change."
	switch st.SubscribePolicy {
	case lists.SubscribeModerate:
		sub += "\nThen a moderator approves the subscription."
	case lists.SubscribeClosed:
		sub = "This list takes no subscriptions by mail."
	}
	return note + fmt.Sprintf(`Commands for %[1]s, sent to %[2]s
as the subject or the first line of a message:

  subscribe     subscribe the address you write from
  unsubscribe   unsubscribe the address you write from
  help          this message

Or send any message to %[3]s or %[4]s.
%[5]s
Unsubscribing needs your confirmation too. Confirmations expire after %[6]s.

To reach the list's owner, write to %[7]s.
`, l, listaddr.Of(l, listaddr.Request, ""), listaddr.Of(l, listaddr.Subscribe, ""), listaddr.Of(l, listaddr.Unsubscribe, ""),
		sub, lists.FormatDuration(st.ConfirmExpire), listaddr.Of(l, listaddr.Owner, ""))
}

func confirmText(l string, r lists.Request, confirm string, st lists.Settings) string {
	what := fmt.Sprintf("subscribe %s to %s", r.Address, l)
	if r.Action == lists.RequestUnsubscribe {
		what = fmt.Sprintf("unsubscribe %s from %s", r.Address, l)
	}
	then := ""
	if r.Action == lists.RequestSubscribe && st.SubscribePolicy == lists.SubscribeModerate {
		then = "A moderator then decides on the subscription.\n"
	}
	return fmt.Sprintf(`Someone, perhaps you, asked to %s.

To confirm, reply to this message; any reply will do. It goes to
  %s
%sThis address works once, until %s.

If you did not ask for this, ignore this message: nothing changes.
`, what, confirm, then, r.Expires.UTC().Format(time.RFC1123Z))
}

func approveText(l string, r lists.Request, confirm string) string {
	return fmt.Sprintf(`%s asked to subscribe to %s and confirmed the request.
The list's subscribe_policy is moderate: the subscription waits for a moderator.

To approve it, reply to this message; any reply will do. It goes to
  %s
This address works once, until %s; a subscription nobody approves by
then lapses. To decline, ignore this message.

On the server: fanmail member approve %[5]s %[6]d, fanmail member reject %[5]s %[6]d
`, r.Address, l, confirm, r.Expires.UTC().Format(time.RFC1123Z), l, r.ID)
}

func welcomeText(l, addr string) string {
	return fmt.Sprintf(`Welcome: %s is now a member of %s.

Post by writing to %s.
To unsubscribe, send any message to %s
or "unsubscribe" to %s.
`, addr, l, l, listaddr.Of(l, listaddr.Unsubscribe, ""), listaddr.Of(l, listaddr.Request, ""))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
