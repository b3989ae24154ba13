package lists

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Tokens authorize a command sent by mail: the address fanmail writes a
// token into (LIST-approve+TOKEN@DOMAIN) is the command, and knowing the
// token is the permission. A token is 160 random bits, written in
// lowercase base32 (32 characters, safe in a local part and unchanged by
// MTAs that lowercase addresses); it is single-use, bound to its purpose,
// list, address and post, and expires. The store keeps only its SHA-256,
// so a copy of the database lets nobody act.
//
// One table serves every purpose; moderation is the first. A later
// command (confirming a subscription) adds a purpose and uses the same
// issue, check and use cycle.

// TokenPurpose is what a token is for.
type TokenPurpose string

// PurposeModerate: a moderator approves or rejects a held post.
const PurposeModerate TokenPurpose = "moderate"

// tokenBytes is the entropy of a token: 160 bits, above the 128 the
// issue of an unguessable token asks for.
const tokenBytes = 20

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TokenLen is the length of a token as written in an address: 160 bits
// in base32.
const TokenLen = (tokenBytes*8 + 4) / 5

// Errors of token use. Their text is safe to show to whoever sent the
// token.
var (
	// ErrBadToken: no such token, or it expired (with its post).
	ErrBadToken = errors.New("unknown or expired token")
	// ErrTokenUsed: the token, or the decision it was for, was used for
	// something else; TokenUsedError says what.
	ErrTokenUsed = errors.New("token already used")
)

// TokenUsedError says what became of the post a token was for.
type TokenUsedError struct {
	Action string // approve, reject or discard
	By     string
}

func (e *TokenUsedError) Error() string {
	return fmt.Sprintf("the post was already %s by %s", PastTense(e.Action), e.By)
}

func (e *TokenUsedError) Unwrap() error { return ErrTokenUsed }

// PastTense is how a decision on a held post reads once made: approve,
// reject and discard become approved, rejected and discarded.
func PastTense(action string) string {
	switch action {
	case "approve":
		return "approved"
	case "reject":
		return "rejected"
	case "discard":
		return "discarded"
	}
	return action + "ed"
}

func newToken() string {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it aborts the program instead)
	return tokenEncoding.EncodeToString(b)
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(token)))
	return hex.EncodeToString(sum[:])
}

// ValidTokenSyntax reports whether s can be a token at all, so that an
// address with anything else after the + is no command address.
func ValidTokenSyntax(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	_, err := tokenEncoding.DecodeString(strings.ToLower(s))
	return err == nil
}

// IssueModerationTokens creates one moderation token per address for
// post id, expiring with the post, and returns them in the order of
// addrs. The post must be held.
func (s *Store) IssueModerationTokens(ctx context.Context, id int64, addrs []string) ([]string, error) {
	tokens := make([]string, len(addrs))
	err := s.write(ctx, func(tx *sql.Tx) error {
		p, err := getPost(ctx, tx, id)
		if err != nil {
			return err
		}
		if p.State != PostHeld {
			return fmt.Errorf("post %d: %w (%s)", id, ErrDecided, p.State)
		}
		lid, err := listID(ctx, tx, p.List)
		if err != nil {
			return err
		}
		for i, a := range addrs {
			tokens[i] = newToken()
			_, err := tx.ExecContext(ctx, `INSERT INTO tokens(hash, purpose, list_id, address, post_id, created, expires)
				VALUES(?, ?, ?, ?, ?, ?, ?)`,
				tokenHash(tokens[i]), PurposeModerate, lid, a, id, s.now().Unix(), p.Expires.Unix())
			if err != nil {
				return fmt.Errorf("issue token for post %d: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tokens, nil
}

// tokenRow is a token as stored.
type tokenRow struct {
	purpose TokenPurpose
	list    string
	address string
	postID  int64
	expires time.Time
	used    bool
	action  string
	usedBy  string
}

func getToken(ctx context.Context, q queryer, token string) (tokenRow, error) {
	var t tokenRow
	var expires, used int64
	err := q.QueryRowContext(ctx, `SELECT t.purpose, l.address, t.address, t.post_id, t.expires, t.used, t.action, t.used_by
		FROM tokens t JOIN lists l ON l.id = t.list_id WHERE t.hash = ?`, tokenHash(token)).
		Scan(&t.purpose, &t.list, &t.address, &t.postID, &expires, &used, &t.action, &t.usedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrBadToken
	}
	if err != nil {
		return t, fmt.Errorf("look up token: %w", err)
	}
	t.expires, t.used = time.Unix(expires, 0), used != 0
	return t, nil
}

// TokenUse is the outcome of a moderation command by mail.
type TokenUse struct {
	Post    Post   // the post as it was before the command
	Already bool   // the same decision was made before: nothing changed
	By      string // who holds the token: the moderator it was sent to
}

// CheckModerationToken tells whether a moderator's command with token
// (action approve or reject) for list would be taken: nil if the token
// is unused or was used for this same action (a retry, which changes
// nothing); ErrBadToken if it does not exist for list, expired or is for
// something else; a *TokenUsedError if its post was decided otherwise.
func (s *Store) CheckModerationToken(ctx context.Context, list, token, action string) error {
	t, err := getToken(ctx, s.db, token)
	if err != nil {
		return err
	}
	if err := s.checkToken(t, list, action); err != nil {
		return err
	}
	if !t.used {
		// An unused token is good only while its post waits.
		if _, err := getPost(ctx, s.db, t.postID); errors.Is(err, ErrNoPost) {
			return ErrBadToken
		} else if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) checkToken(t tokenRow, list, action string) error {
	if t.purpose != PurposeModerate || !strings.EqualFold(t.list, lookupKey(list)) || !t.expires.After(s.now()) {
		return ErrBadToken
	}
	if t.used && t.action != action {
		return &TokenUsedError{Action: t.action, By: t.usedBy}
	}
	return nil
}

// UseModerationToken applies a moderator's command by mail: approve or
// reject the post the token is for, in one transaction with marking
// every token of the post used. Errors are CheckModerationToken's; a
// command already applied returns Already and changes nothing.
func (s *Store) UseModerationToken(ctx context.Context, list, token, action string) (TokenUse, error) {
	var use TokenUse
	err := s.write(ctx, func(tx *sql.Tx) error {
		t, err := getToken(ctx, tx, token)
		if err != nil {
			return err
		}
		if err := s.checkToken(t, list, action); err != nil {
			return err
		}
		use.By = t.address
		if t.used {
			use.Already = true
			return nil
		}
		p, err := getPost(ctx, tx, t.postID)
		if errors.Is(err, ErrNoPost) {
			return ErrBadToken
		}
		if err != nil {
			return err
		}
		use.Post = p
		d := Decision{Action: action, By: t.address}
		if action == "reject" {
			d.Note = "rejected by a moderator"
		}
		return s.decideTx(ctx, tx, p, d)
	})
	return use, err
}

// sweepTokens deletes the tokens that expired.
func sweepTokens(ctx context.Context, tx *sql.Tx, now time.Time) error {
	_, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE expires <= ?", now.Unix())
	return err
}
