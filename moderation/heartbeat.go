package moderation

import (
	"context"
	"time"
)

// The Runner is what holds a node's claims on posts, so it is also what
// tells the store the node is alive (lists.Store.Heartbeat): it records
// its start before settling its claims, a heartbeat every
// HeartbeatEvery from a goroutine of its own (a long scan, distributing
// a post to a large list, must not make a live node look gone), and its
// clean stop once it takes no more claims. fanmail mod release reads it
// to refuse releasing the claims of a node that runs. A node without a
// name ([node] name unset and no hostname) records nothing: no claim
// names it.

// started records the node's start; it reports whether that worked.
func (r *Runner) started(ctx context.Context, node string) bool {
	err := r.cfg.Store.NodeStarted(ctx, node, r.cfg.Version, r.cfg.Now())
	if err != nil && ctx.Err() == nil {
		r.log.Error("moderation: cannot record this node's start in the list store; retrying with the heartbeat",
			"node", node, "err", err)
	}
	return err == nil
}

// heartbeat writes the node's heartbeat every HeartbeatEvery until ctx
// ends, and its start first if started is false.
func (r *Runner) heartbeat(ctx context.Context, node string, started bool) {
	t := time.NewTicker(r.cfg.HeartbeatEvery)
	defer t.Stop()
	failing := !started // said once per outage, not per beat
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// One write must not outlive the next: a hung store would
		// otherwise stack them up.
		bctx, cancel := context.WithTimeout(ctx, r.cfg.HeartbeatEvery)
		var err error
		if started {
			err = r.cfg.Store.Heartbeat(bctx, node, r.cfg.Now())
		} else if err = r.cfg.Store.NodeStarted(bctx, node, r.cfg.Version, r.cfg.Now()); err == nil {
			started = true
		}
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			r.log.Error("moderation: heartbeat not written; other nodes may take this one for gone", "node", node, "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("moderation: heartbeat written again", "node", node)
			failing = false
		}
	}
}

// stopped records the node's clean stop, with a context of its own: the
// Runner's has ended.
func (r *Runner) stopped(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.cfg.Store.NodeStopped(ctx, node, r.cfg.Now()); err != nil {
		r.log.Warn("moderation: cannot record this node's clean stop; mod release waits until its heartbeat is old",
			"node", node, "err", err)
	}
}
