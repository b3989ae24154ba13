package lists

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Decision is a moderator's decision on a held post.
type Decision struct {
	Action string // approve, reject or discard
	By     string // who decided: a moderator's address, or "cli" and the user
	Note   string // reject: the reason the poster is given
}

// Decide applies d to the held post id in one transaction: approve makes
// it accepted (the server distributes it), reject makes it rejected (the
// server notifies the poster), discard deletes it. Every token issued for
// the post is used up with it. A post that is not held is ErrDecided; a
// post that does not exist, ErrNoPost. It returns the post as it was.
func (s *Store) Decide(ctx context.Context, id int64, d Decision) (Post, error) {
	var p Post
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if p, err = getPost(ctx, tx, id); err != nil {
			return err
		}
		return s.decideTx(ctx, tx, p, d)
	})
	return p, err
}

func (s *Store) decideTx(ctx context.Context, tx *sql.Tx, p Post, d Decision) error {
	if p.State != PostHeld {
		return fmt.Errorf("post %d is %s: %w", p.ID, describeState(p), ErrDecided)
	}
	var err error
	switch d.Action {
	case "approve":
		// A claim on a held post is a node's, sending the moderators'
		// notices; the decision ends it (MarkNotified then does nothing).
		_, err = tx.ExecContext(ctx, `UPDATE posts SET state = 'accepted', reason = ?, decided_by = ?, next_try = 0,
			claim = '' WHERE id = ?`, "approved by "+d.By, d.By, p.ID)
	case "reject":
		_, err = tx.ExecContext(ctx, `UPDATE posts SET state = 'rejected', reason = ?, decided_by = ?, note = ?,
			claim = '' WHERE id = ?`, "rejected by "+d.By, d.By, d.Note, p.ID)
	case "discard":
		_, err = tx.ExecContext(ctx, "DELETE FROM posts WHERE id = ?", p.ID)
	default:
		return fmt.Errorf("decide post %d: unknown action %q", p.ID, d.Action)
	}
	if err != nil {
		return fmt.Errorf("%s post %d: %w", d.Action, p.ID, err)
	}
	_, err = tx.ExecContext(ctx, "UPDATE tokens SET used = ?, action = ?, used_by = ? WHERE post_id = ? AND used = 0",
		s.now().Unix(), d.Action, d.By, p.ID)
	if err != nil {
		return fmt.Errorf("%s post %d: %w", d.Action, p.ID, err)
	}
	return nil
}

// describeState says what became of a post that is no longer held.
func describeState(p Post) string {
	switch p.State {
	case PostAccepted:
		if p.DecidedBy != "" {
			return "already approved by " + p.DecidedBy
		}
		return "accepted and waiting to be distributed (" + p.Reason + ")"
	case PostRejected:
		return "already rejected by " + p.DecidedBy
	}
	return string(p.State)
}

// ClaimNotice marks a held post whose moderators have not been notified
// as being notified by the holder of claim (a fresh queue ID of the
// node), so that of several servers exactly one sends the notices. It
// reports whether this caller got the claim. MarkNotified ends the
// claim, as does a decision on the post, and Unclaim gives it up.
func (s *Store) ClaimNotice(ctx context.Context, id int64, claim string) (bool, error) {
	return s.claim(ctx, id, claim, "state = 'held' AND notified = 0")
}

// MarkNotified records that the moderators of held post id have been
// sent their notices, and ends the claim ClaimNotice took. A post
// decided meanwhile is left alone.
func (s *Store) MarkNotified(ctx context.Context, id int64) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE posts SET notified = 1, claim = '' WHERE id = ? AND state = 'held'", id)
		if err != nil {
			return fmt.Errorf("mark post %d notified: %w", id, err)
		}
		return nil
	})
}

// Claim marks an accepted or rejected post as being turned into the
// queue message qid, so that of several servers, or a server and a
// retry of its own, exactly one does it. It reports whether this caller
// got the claim.
func (s *Store) Claim(ctx context.Context, id int64, qid string) (bool, error) {
	return s.claim(ctx, id, qid, "state IN ('accepted', 'rejected')")
}

func (s *Store) claim(ctx context.Context, id int64, claim, cond string) (bool, error) {
	var got bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE posts SET claim = ? WHERE id = ? AND claim = '' AND "+cond, claim, id)
		if err != nil {
			return fmt.Errorf("claim post %d: %w", id, err)
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	return got, err
}

// DeletePost deletes a post: one whose message is in the queue (its
// claim is done), or one its server withdraws (the client was told to
// send it again). Its tokens stay, to answer a moderator who acts late.
func (s *Store) DeletePost(ctx context.Context, id int64) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM posts WHERE id = ?", id); err != nil {
			return fmt.Errorf("delete post %d: %w", id, err)
		}
		return nil
	})
}

// Retry gives up a claim: the post is tried again from next on, and
// reason says why it waits.
func (s *Store) Retry(ctx context.Context, id int64, next time.Time, reason string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE posts SET claim = '', next_try = ?, reason = ? WHERE id = ?",
			next.Unix(), reason, id)
		if err != nil {
			return fmt.Errorf("retry post %d: %w", id, err)
		}
		return nil
	})
}

// Unclaim gives up claim on post id without changing anything else:
// the message it named never reached the queue, or the notices were not
// sent. A claim that is no longer claim (a decision ended it, another
// node took the post since) is left alone.
func (s *Store) Unclaim(ctx context.Context, id int64, claim string) error {
	_, err := s.unclaim(ctx, id, claim)
	return err
}

// Expire deletes the held and accepted posts whose time ran out by now
// (not those claimed at the moment) and the tokens that expired, and
// returns the posts it deleted. With nothing to delete it writes
// nothing, so that looking costs no commit (and no new Version).
func (s *Store) Expire(ctx context.Context, now time.Time) ([]Post, error) {
	const due = ` FROM posts p JOIN lists l ON l.id = p.list_id
		WHERE p.expires <= ? AND p.claim = '' AND p.state IN ('held', 'accepted')`
	var n, tokens int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*)"+due, now.Unix()).Scan(&n); err != nil {
		return nil, fmt.Errorf("expire posts: %w", err)
	}
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM tokens WHERE expires <= ?", now.Unix()).Scan(&tokens); err != nil {
		return nil, fmt.Errorf("expire tokens: %w", err)
	}
	if n == 0 && tokens == 0 {
		return nil, nil
	}
	var gone []Post
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		gone, err = collect(ctx, tx, "expire posts", scanPost, "SELECT "+postColumns+due+" ORDER BY p.id", now.Unix())
		if err != nil {
			return err
		}
		for _, p := range gone {
			// The post's tokens go with it: they expire with it.
			if _, err := tx.ExecContext(ctx, "DELETE FROM posts WHERE id = ?", p.ID); err != nil {
				return fmt.Errorf("expire post %d: %w", p.ID, err)
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE post_id = ? AND purpose = ?", p.ID, PurposeModerate); err != nil {
				return fmt.Errorf("expire tokens of post %d: %w", p.ID, err)
			}
		}
		if err := sweepTokens(ctx, tx, now); err != nil {
			return fmt.Errorf("expire tokens: %w", err)
		}
		return nil
	})
	return gone, err
}
