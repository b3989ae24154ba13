package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Requests by mail. Someone asks, by mail to LIST-request, -subscribe or
// -unsubscribe, to change an address's membership; nothing changes until
// the address itself confirms, by a reply to LIST-confirm+TOKEN (double
// opt-in: the token reaches only whoever reads the address's mail). On a
// list with subscribe_policy = moderate a confirmed subscription then
// waits for a moderator, who approves it the same way, with a token of
// their own. A request lives in the requests table until it is done or
// its time (confirm_expire) runs out; its tokens are rows of the tokens
// table (tokens.go), with the request's id, used up when it is done.

// RequestAction is what a request asks for.
type RequestAction string

const (
	RequestSubscribe   RequestAction = "subscribe"
	RequestUnsubscribe RequestAction = "unsubscribe"
	// RequestEnable re-enables a member's delivery that bounces disabled.
	RequestEnable RequestAction = "enable"
)

// Token purposes of requests.
const (
	// PurposeConfirm: the address of a request confirms it.
	PurposeConfirm TokenPurpose = "confirm"
	// PurposeApproveRequest: a moderator approves a confirmed
	// subscription (subscribe_policy = moderate).
	PurposeApproveRequest TokenPurpose = "approve-request"
)

// Request states (and those of one approved on the server, waiting
// for its welcome: reqadmin.go).
const (
	requestConfirm = "confirm" // waits for the address
	requestApprove = "approve" // confirmed; waits for a moderator
)

// migrationMail is the schema of commands by mail and bounce
// processing: requests, the rate of answers, and members' bounces
// (bounces.go).
const migrationMail = `CREATE TABLE requests (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
		address TEXT NOT NULL,    -- address.Normalize form
		action  TEXT NOT NULL,    -- subscribe, unsubscribe, enable
		state   TEXT NOT NULL,    -- confirm, approve
		created INTEGER NOT NULL, -- Unix seconds
		expires INTEGER NOT NULL
	);
	CREATE INDEX requests_by_expiry ON requests(expires);
	ALTER TABLE tokens ADD COLUMN request_id INTEGER NOT NULL DEFAULT 0;
	-- One row per answer sent to an address, for the daily limit.
	CREATE TABLE answers (
		address TEXT NOT NULL, -- lowercase
		sent    INTEGER NOT NULL -- Unix seconds
	);
	CREATE INDEX answers_by_address ON answers(address, sent);
	-- A member's bounce score and delivery state (bounces.State); no row
	-- is the zero state.
	CREATE TABLE member_bounces (
		list_id       INTEGER NOT NULL,
		address       TEXT NOT NULL,
		score         REAL NOT NULL,
		last_bounce   INTEGER NOT NULL, -- Unix seconds; 0 none
		disabled      INTEGER NOT NULL, -- Unix seconds; 0 enabled
		warnings_sent INTEGER NOT NULL,
		last_warning  INTEGER NOT NULL, -- Unix seconds; 0 none
		PRIMARY KEY (list_id, address),
		FOREIGN KEY (list_id, address) REFERENCES members(list_id, address) ON DELETE CASCADE
	) WITHOUT ROWID;
	CREATE INDEX member_bounces_disabled ON member_bounces(disabled);
	-- The evidence: the last few bounces of each member, bounded.
	CREATE TABLE bounce_events (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		list_id    INTEGER NOT NULL,
		address    TEXT NOT NULL,
		at         INTEGER NOT NULL, -- Unix seconds
		source     TEXT NOT NULL,    -- dsn (a report), smtp (a reply during delivery)
		action     TEXT NOT NULL,    -- failed, delayed
		status     TEXT NOT NULL,    -- RFC 3463
		severity   TEXT NOT NULL,    -- hard, soft
		diagnostic TEXT NOT NULL,
		remote_mta TEXT NOT NULL,
		evidence   TEXT NOT NULL,    -- an excerpt of the report or the reply
		scored     TEXT NOT NULL,    -- what the score made of it
		FOREIGN KEY (list_id, address) REFERENCES members(list_id, address) ON DELETE CASCADE
	);
	CREATE INDEX bounce_events_by_member ON bounce_events(list_id, address, id);`

// Request is a change of membership asked for by mail.
type Request struct {
	ID      int64
	List    string
	Address string
	Action  RequestAction
	Expires time.Time
}

// ErrNoRequest means a token's request is gone: done, or expired.
var ErrNoRequest = errors.New("no such request")

// OpenRequest records a request by mail for addr on list, waiting for
// addr's confirmation until ttl from now, and returns its token, which
// only the confirmation sent to addr carries.
func (s *Store) OpenRequest(ctx context.Context, list, addr string, action RequestAction, ttl time.Duration) (string, Request, error) {
	norm, _, err := normalizeAll([]string{addr})
	if err != nil {
		return "", Request{}, fmt.Errorf("request for %s: %w", list, err)
	}
	now := s.now()
	r := Request{Address: norm[0], Action: action, Expires: now.Add(ttl)}
	token := newToken()
	err = s.write(ctx, func(tx *sql.Tx) error {
		id, err := listID(ctx, tx, list)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "SELECT address FROM lists WHERE id = ?", id).Scan(&r.List); err != nil {
			return fmt.Errorf("request for %s: %w", list, err)
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO requests(list_id, address, action, state, created, expires)
			VALUES(?, ?, ?, ?, ?, ?) RETURNING id`, id, r.Address, string(action), requestConfirm, now.Unix(), r.Expires.Unix()).Scan(&r.ID)
		if err != nil {
			return fmt.Errorf("request for %s: %w", list, err)
		}
		return insertRequestToken(ctx, tx, token, PurposeConfirm, id, r.Address, r.ID, now, r.Expires)
	})
	if err != nil {
		return "", Request{}, err
	}
	return token, r, nil
}

func insertRequestToken(ctx context.Context, tx *sql.Tx, token string, purpose TokenPurpose, listID int64, to string, request int64, now, expires time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO tokens(hash, purpose, list_id, address, request_id, created, expires)
		VALUES(?, ?, ?, ?, ?, ?, ?)`, tokenHash(token), string(purpose), listID, to, request, now.Unix(), expires.Unix())
	if err != nil {
		return fmt.Errorf("issue token for request %d: %w", request, err)
	}
	return nil
}

// ConfirmUsedError is a confirmation token used before: the request it
// was for is done.
type ConfirmUsedError struct {
	Action string // what the token did: confirm, approve
	By     string // who used it
}

func (e *ConfirmUsedError) Error() string {
	return fmt.Sprintf("this confirmation address was already used (%s by %s)", e.Action, e.By)
}

func (e *ConfirmUsedError) Unwrap() error { return ErrTokenUsed }

// requestToken reads a request token and checks it for list: ErrBadToken
// if it does not exist, is for another list or purpose, or expired; a
// *ConfirmUsedError if it was used.
func (s *Store) requestToken(ctx context.Context, q queryer, list, token string) (tokenRow, int64, error) {
	t, err := getToken(ctx, q, token)
	if err != nil {
		return t, 0, err
	}
	if (t.purpose != PurposeConfirm && t.purpose != PurposeApproveRequest) || !t.expires.After(s.now()) {
		return t, 0, ErrBadToken
	}
	var lid, req int64
	err = q.QueryRowContext(ctx, `SELECT t.list_id, t.request_id FROM tokens t WHERE t.hash = ?`, tokenHash(token)).Scan(&lid, &req)
	if err != nil {
		return t, 0, fmt.Errorf("look up token: %w", err)
	}
	if id, err := listID(ctx, q, list); err != nil || id != lid {
		return t, 0, ErrBadToken
	}
	if t.used {
		return t, 0, &ConfirmUsedError{Action: t.action, By: t.usedBy}
	}
	return t, req, nil
}

// CheckConfirmToken tells whether a reply to LIST-confirm+TOKEN would be
// taken (at RCPT): nil, ErrBadToken or a *ConfirmUsedError.
func (s *Store) CheckConfirmToken(ctx context.Context, list, token string) error {
	_, req, err := s.requestToken(ctx, s.db, list, token)
	if err != nil {
		return err
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1 FROM requests WHERE id = ?", req).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return ErrBadToken
	} else if err != nil {
		return fmt.Errorf("look up request %d: %w", req, err)
	}
	return nil
}

// Confirmation is what a confirmation token did.
type Confirmation struct {
	Request Request
	// Approved says a moderator's token approved the request (else the
	// address confirmed it).
	Approved bool
	// Changed says the membership changed. False, and not Waiting:
	// nothing to do (already a member, or not one).
	Changed bool
	// Waiting says the address has confirmed a subscription that now
	// waits for a moderator (subscribe_policy = moderate).
	Waiting bool
	// Approvers are, when the list is moderated and the address has
	// just confirmed, the moderators (or, with none, the owner) to ask,
	// each with their token; empty when there is nobody to ask.
	Approvers []Approver
}

// Approver is a moderator asked to approve a request, and the token
// that does it.
type Approver struct {
	Address, Token string
}

// UseConfirmToken carries out a reply to LIST-confirm+TOKEN from by, in
// one transaction: the token is used up, and the request it confirms
// done (the member added, removed or re-enabled) or, on a list with
// subscribe_policy = moderate, a confirmed subscription passed to the
// moderators with tokens of their own (until approveTTL from now).
// Errors are CheckConfirmToken's; nothing changes on error.
func (s *Store) UseConfirmToken(ctx context.Context, list, token, by string, approveTTL time.Duration) (Confirmation, error) {
	var c Confirmation
	err := s.write(ctx, func(tx *sql.Tx) error {
		c = Confirmation{}
		t, reqID, err := s.requestToken(ctx, tx, list, token)
		if err != nil {
			return err
		}
		var lid, expires int64
		var state string
		err = tx.QueryRowContext(ctx, `SELECT r.id, l.address, r.list_id, r.address, r.action, r.state, r.expires
			FROM requests r JOIN lists l ON l.id = r.list_id WHERE r.id = ?`, reqID).
			Scan(&c.Request.ID, &c.Request.List, &lid, &c.Request.Address, &c.Request.Action, &state, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrBadToken
		}
		if err != nil {
			return fmt.Errorf("look up request %d: %w", reqID, err)
		}
		c.Request.Expires = time.Unix(expires, 0)
		c.Approved = t.purpose == PurposeApproveRequest
		if (state == requestApprove) != c.Approved {
			return ErrBadToken // a confirmation for a request past it, or the reverse
		}
		action := "confirm"
		if c.Approved {
			action = "approve"
		}
		if _, err := tx.ExecContext(ctx, "UPDATE tokens SET used = ?, action = ?, used_by = ? WHERE request_id = ? AND used = 0",
			s.now().Unix(), action, by, reqID); err != nil {
			return fmt.Errorf("use token of request %d: %w", reqID, err)
		}
		if c.Request.Action == RequestSubscribe && !c.Approved {
			settings, err := settingsOf(ctx, tx, lid)
			if err != nil {
				return err
			}
			if settings.SubscribePolicy == SubscribeModerate {
				return s.askApprovers(ctx, tx, &c, lid, approveTTL)
			}
		}
		if c.Changed, err = applyRequest(ctx, tx, lid, c.Request); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM requests WHERE id = ?", reqID)
		return err
	})
	return c, err
}

// askApprovers moves a confirmed subscription on to the moderators.
func (s *Store) askApprovers(ctx context.Context, tx *sql.Tx, c *Confirmation, lid int64, ttl time.Duration) error {
	if _, err := findMember(ctx, tx, lid, c.Request.Address); !errors.Is(err, ErrNotMember) {
		if err == nil { // a member already: nothing to approve
			_, err = tx.ExecContext(ctx, "DELETE FROM requests WHERE id = ?", c.Request.ID)
		}
		return err
	}
	to, err := moderatorsOf(ctx, tx, lid, c.Request.List)
	if err != nil {
		return err
	}
	if len(to) == 0 {
		var owner string
		if err := tx.QueryRowContext(ctx, "SELECT owner FROM lists WHERE id = ?", lid).Scan(&owner); err != nil {
			return err
		}
		if owner != "" {
			to = []string{owner}
		}
	}
	now := s.now()
	c.Waiting = true
	c.Request.Expires = now.Add(ttl)
	if _, err := tx.ExecContext(ctx, "UPDATE requests SET state = ?, expires = ? WHERE id = ?",
		requestApprove, c.Request.Expires.Unix(), c.Request.ID); err != nil {
		return err
	}
	for _, a := range to {
		tok := newToken()
		if err := insertRequestToken(ctx, tx, tok, PurposeApproveRequest, lid, a, c.Request.ID, now, c.Request.Expires); err != nil {
			return err
		}
		c.Approvers = append(c.Approvers, Approver{Address: a, Token: tok})
	}
	return nil
}

// applyRequest changes the membership as r asks and reports whether
// anything changed.
func applyRequest(ctx context.Context, tx *sql.Tx, lid int64, r Request) (bool, error) {
	// The member as stored, which may differ in the case of its local
	// part (as IsMember compares).
	member, err := findMember(ctx, tx, lid, r.Address)
	if err != nil && !errors.Is(err, ErrNotMember) {
		return false, err
	}
	var res sql.Result
	switch {
	case r.Action == RequestSubscribe && member != "":
		return false, nil
	case r.Action == RequestSubscribe:
		res, err = tx.ExecContext(ctx, "INSERT INTO members(list_id, address, domain) VALUES(?, ?, ?) ON CONFLICT DO NOTHING",
			lid, r.Address, domainOf(r.Address))
	case member == "":
		return false, nil
	case r.Action == RequestUnsubscribe:
		res, err = tx.ExecContext(ctx, "DELETE FROM members WHERE list_id = ? AND address = ?", lid, member)
	case r.Action == RequestEnable:
		res, err = tx.ExecContext(ctx, "DELETE FROM member_bounces WHERE list_id = ? AND address = ?", lid, member)
	default:
		return false, fmt.Errorf("request %d: unknown action %q", r.ID, r.Action)
	}
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", r.Action, r.Address, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ExpireRequests deletes the requests whose time ran out by now, with
// their tokens, and returns those that were open (not the approved ones
// whose welcome lapsed, reqadmin.go). With nothing to delete it writes
// nothing.
func (s *Store) ExpireRequests(ctx context.Context, now time.Time) ([]Request, error) {
	due, err := hasRow(ctx, s.db, "SELECT 1 FROM requests WHERE expires <= ? LIMIT 1", now.Unix())
	if err != nil || !due {
		return nil, err
	}
	var gone []Request
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		gone, err = collect(ctx, tx, "expire requests", func(scan func(...any) error) (Request, error) {
			var r Request
			var exp int64
			err := scan(&r.ID, &r.List, &r.Address, &r.Action, &exp)
			r.Expires = time.Unix(exp, 0)
			return r, err
		}, `SELECT r.id, l.address, r.address, r.action, r.expires
			FROM requests r JOIN lists l ON l.id = r.list_id WHERE r.expires <= ? AND r.state IN (?, ?) ORDER BY r.id`,
			now.Unix(), requestConfirm, requestApprove)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM requests WHERE expires <= ?", now.Unix()); err != nil {
			return fmt.Errorf("expire requests: %w", err)
		}
		return sweepTokens(ctx, tx, now)
	})
	return gone, err
}

// hasRow reports whether query returns a row.
func hasRow(ctx context.Context, q queryer, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func domainOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[i+1:]
		}
	}
	return ""
}
