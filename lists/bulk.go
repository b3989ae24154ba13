package lists

import (
	"context"
	"database/sql"
	"fmt"
)

// Outcome is what a decision did to one post of several.
type Outcome struct {
	ID   int64
	Post Post  // the post as it was before the decision; zero with ErrNoPost
	Err  error // nil: decided; else wraps ErrNoPost, ErrDecided or the store's error
}

// DecideEach applies d to each of ids in turn, each in a transaction of
// its own (Decide), and returns one Outcome per ID, in order. One
// transaction per post, not one for all: each post is decided on its
// own, so a post that is gone or already decided fails alone instead of
// undoing the others; a crash halfway leaves every post decided or not,
// never half; and the store's one write lock (which every node's
// ingress takes too) is held for one post at a time, not for hundreds.
// The state machine of Decide is what makes a decision once only:
// whoever comes second, a moderator's reply or another run of the same
// command, gets ErrDecided. Once ctx ends, the remaining posts fail
// with its error, undecided.
func (s *Store) DecideEach(ctx context.Context, ids []int64, d Decision) []Outcome {
	out := make([]Outcome, len(ids))
	for i, id := range ids {
		out[i].ID = id
		if err := ctx.Err(); err != nil {
			out[i].Err = fmt.Errorf("%s post %d: %w", d.Action, id, err)
			continue
		}
		out[i].Post, out[i].Err = s.Decide(ctx, id, d)
	}
	return out
}

// ReleaseClaim gives up the claim on post id if it is still claim, for
// an operator whose node took the claim and is gone for good: the post
// is then due again, and whichever node scans next takes it. It reports
// whether it released the claim; false means the post is gone or its
// claim changed (the node finished or gave it up meanwhile). Unlike
// Unclaim, which a node calls on its own claims, the caller must know
// the claim's node is not running: a node that still is could queue
// the post while another node does the same.
func (s *Store) ReleaseClaim(ctx context.Context, id int64, claim string) (bool, error) {
	if claim == "" {
		return false, fmt.Errorf("release claim on post %d: no claim given", id)
	}
	return s.unclaim(ctx, id, claim)
}

// unclaim clears the claim on post id if it is claim, and reports
// whether it did.
func (s *Store) unclaim(ctx context.Context, id int64, claim string) (bool, error) {
	var done bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE posts SET claim = '' WHERE id = ? AND claim = ?", id, claim)
		if err != nil {
			return fmt.Errorf("unclaim post %d: %w", id, err)
		}
		n, err := res.RowsAffected()
		done = n == 1
		return err
	})
	return done, err
}
