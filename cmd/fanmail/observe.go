package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"fanmail/delivery"
	"fanmail/ingress"
	"fanmail/metrics"
	"fanmail/queuegroups"
)

// newMetrics wires the metrics edge to the server's stages. The sources
// are read at each scrape, after buildServer has set them all.
func (s *server) newMetrics(spool queuegroups.Config) *metrics.Metrics {
	var dirs []string
	for _, g := range spool.Groups {
		dirs = append(dirs, g.Dirs...)
	}
	return metrics.New(metrics.Sources{
		Ingress:  func() ingress.Stats { return s.smtp.Stats() },
		Queue:    func() []queuegroups.DirSummary { return s.queue.Summary(0, 0) },
		Delivery: func() delivery.Stats { return s.agent.Stats() },
		Expired:  func() map[string]int64 { return s.queue.Expired() },
		Health: map[string]func(context.Context) error{
			"spool": func(context.Context) error { return writable(dirs) },
			"lists": func(ctx context.Context) error {
				_, err := s.store.Version(ctx)
				return err
			},
		},
	})
}

// writable checks that a file can be created in each directory, as the
// journal's next segment will need.
func writable(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		f, err := os.CreateTemp(d, ".healthz-*")
		if err != nil {
			errs = append(errs, fmt.Errorf("queue directory %s is not writable: %w", d, err))
			continue
		}
		f.Close()
		os.Remove(f.Name())
	}
	return errors.Join(errs...)
}

// controlView is what the control socket serves: the queue, and the
// status fanmail status prints.
type controlView struct {
	*queuegroups.Queue
	m *metrics.Metrics
}

func (v controlView) Status() any {
	st := v.m.Status()
	st.Version = readBuildInfo().String()
	return st
}

// listDomains returns the domains of the lists in the store, for the
// expander's postmaster and abuse addresses and for telling a list's own
// addresses at delivery (listmail). It is asked again after every change
// of the store, bounces recorded included, so it reads the addresses
// alone.
func (s *server) listDomains(ctx context.Context) ([]string, error) {
	return s.store.Domains(ctx)
}
