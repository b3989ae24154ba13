package listmail

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fanmail/lists"
)

// Run does, every TickEvery until ctx ends, what comes due with time:
// the warnings and removals of members whose delivery bounces disabled,
// the welcomes of subscriptions approved on the server (fanmail member
// approve), and the expiry of requests nobody confirmed and of answer
// counts; and it records the 5xx replies of lists' mail in batches
// meanwhile.
func (s *Service) Run(ctx context.Context) {
	// The 5xx replies delivery gets are recorded in batches from now on
	// (recorder.go), until ctx ends.
	s.recording.Store(true)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		s.recordLoop(ctx)
	}()
	defer func() { <-recorded }()
	t := time.NewTicker(s.cfg.TickEvery)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("listmail: periodic work", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick does once what Run does periodically; tests call it to step.
func (s *Service) Tick(ctx context.Context) error {
	now := s.cfg.Now()
	var errs []error
	disabled, err := s.cfg.Store.DisabledMembers(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	settings := map[string]lists.Settings{}
	for _, m := range disabled {
		st, ok := settings[m.List]
		if !ok {
			if st, err = s.settings(ctx, m.List); err != nil {
				errs = append(errs, err)
				continue
			}
			settings[m.List] = st
		}
		p := policy(st)
		if next, due := p.NextTick(m.State); !due || next.After(now) {
			continue
		}
		if err := s.tick(ctx, m.List, m.Address, p, now); err != nil {
			errs = append(errs, err)
		}
	}
	gone, err := s.cfg.Store.ExpireRequests(ctx, now)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range gone {
		s.log.Info("listmail: request expired unconfirmed", "list", r.List, "address", r.Address, "action", string(r.Action), "request", r.ID)
	}
	if err := s.welcome(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.cfg.Store.SweepAnswers(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// welcome sends the welcome of each subscription approved on the server,
// as a moderator's approval by mail gets (confirm), claiming each first
// so that of several servers one sends it.
func (s *Service) welcome(ctx context.Context) error {
	due, err := s.cfg.Store.Welcomes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range due {
		got, err := s.cfg.Store.ClaimWelcome(ctx, r.ID)
		if err != nil || !got {
			errs = append(errs, err)
			continue
		}
		what, err := s.sendWelcome(ctx, r)
		if err != nil {
			// Given back: the next tick tries again.
			errs = append(errs, fmt.Errorf("welcome %s to %s: %w", r.Address, r.List, err))
		} else {
			s.log.Info("listmail: subscription approved on the server", "list", r.List, "address", r.Address, "request", r.ID, "welcome", what)
		}
		if err := s.cfg.Store.FinishWelcome(ctx, r.ID, err == nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sendWelcome welcomes the member r added, if still one.
func (s *Service) sendWelcome(ctx context.Context, r lists.Request) (string, error) {
	member, err := s.cfg.Store.IsMember(ctx, r.List, r.Address)
	if err != nil || !member {
		return "none: no longer a member", err
	}
	settings, err := s.settings(ctx, r.List)
	if err != nil {
		return "", err
	}
	return s.answer(ctx, settings, outgoing{list: r.List, to: r.Address, subject: "Welcome to " + r.List, text: welcomeText(r.List, r.Address)})
}
