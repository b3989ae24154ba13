package lists

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// AllowAnswer decides, and records if so, whether fanmail may send addr
// one more answer to a command by mail at now: at most perDay in the 24
// hours before now, counted per mailbox over every list, so nobody can
// use the server to mail-bomb a third party by sending commands in its
// name. perDay 0 allows none.
func (s *Store) AllowAnswer(ctx context.Context, addr string, now time.Time, perDay int) (bool, error) {
	key := answerKey(addr)
	var ok bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		since := now.Add(-24 * time.Hour).Unix()
		if _, err := tx.ExecContext(ctx, "DELETE FROM answers WHERE address = ? AND sent <= ?", key, since); err != nil {
			return fmt.Errorf("answers to %s: %w", addr, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM answers WHERE address = ?", key).Scan(&n); err != nil {
			return fmt.Errorf("answers to %s: %w", addr, err)
		}
		if ok = n < perDay; !ok {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO answers(address, sent) VALUES(?, ?)", key, now.Unix()); err != nil {
			return fmt.Errorf("answers to %s: %w", addr, err)
		}
		return nil
	})
	return ok, err
}

// answerKey is the mailbox an answer to addr lands in, as far as the
// limit can tell: compared without regard to case, and with a +detail
// (RFC 5233 subaddress, which most providers deliver to the same
// mailbox) left off, so that a+1@, a+2@, ... share a@'s allowance
// instead of each bringing its own.
func answerKey(addr string) string {
	key := strings.ToLower(addr)
	at := strings.LastIndexByte(key, '@')
	if at < 0 {
		return key
	}
	if plus := strings.IndexByte(key[:at], '+'); plus > 0 {
		key = key[:plus] + key[at:]
	}
	return key
}

// SweepAnswers forgets answers older than a day, of every address.
func (s *Store) SweepAnswers(ctx context.Context, now time.Time) error {
	old, err := hasRow(ctx, s.db, "SELECT 1 FROM answers WHERE sent <= ? LIMIT 1", now.Add(-24*time.Hour).Unix())
	if err != nil || !old {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM answers WHERE sent <= ?", now.Add(-24*time.Hour).Unix())
		return err
	})
}
