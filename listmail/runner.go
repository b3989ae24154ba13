package listmail

import (
	"context"
	"errors"
	"time"

	"fanmail/lists"
)

// Run does, every TickEvery until ctx ends, what comes due with time:
// the warnings and removals of members whose delivery bounces disabled,
// and the expiry of requests nobody confirmed and of answer counts; and
// it records the 5xx replies of lists' mail in batches meanwhile.
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
	if err := s.cfg.Store.SweepAnswers(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
