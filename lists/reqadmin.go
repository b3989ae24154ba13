package lists

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Requests from the server's side: an operator lists a list's open
// requests and approves or rejects one by its ID, as a moderator does by
// mail. The address's own confirmation stays the address's: a request
// still waiting for it cannot be approved here (double opt-in); adding
// or removing an address by hand is what the member commands are for.
//
// An approval here records what the running server does about it: the
// request stays, in state welcome, until a server (listmail) claims it
// (welcoming), sends the new member the welcome a moderator's reply by
// mail would have got, and deletes it. A welcome no server sends within
// welcomeTTL lapses with the request, as does one a crash interrupted
// between its claim and its end: a welcome is sent at most once.

// RequestState is where an open request stands.
type RequestState string

const (
	// StateConfirm: the request waits for the address's confirmation.
	StateConfirm RequestState = requestConfirm
	// StateModerator: the address confirmed a subscription that waits
	// for a moderator (subscribe_policy = moderate).
	StateModerator RequestState = requestApprove
)

// States of a request approved here, for the server's welcome.
const (
	requestWelcome   = "welcome"   // approved: a server is to send the welcome
	requestWelcoming = "welcoming" // a server is sending it
)

// welcomeTTL is how long an approved request waits for a server to send
// its welcome.
const welcomeTTL = 7 * 24 * time.Hour

// OpenRequestInfo is an open request as an operator sees it.
type OpenRequestInfo struct {
	Request
	State   RequestState
	Created time.Time
}

// Errors of deciding a request by ID.
var (
	// ErrRequestExpired: the request's time ran out; it is deleted at
	// the server's next sweep.
	ErrRequestExpired = errors.New("request expired")
	// ErrUnconfirmed: the request still waits for the address's own
	// confirmation, which nobody else can give.
	ErrUnconfirmed = errors.New("request not confirmed by its address")
)

// RequestError is a request that cannot be decided: Err is ErrNoRequest
// (none with that ID; OtherList set if it is another list's),
// ErrRequestExpired or ErrUnconfirmed, and Request what is known of it.
type RequestError struct {
	Request   OpenRequestInfo
	OtherList string
	Err       error
}

func (e *RequestError) Error() string {
	r := e.Request
	switch {
	case e.OtherList != "":
		return fmt.Sprintf("request %d is for list %s, not %s: %v", r.ID, e.OtherList, r.List, e.Err)
	case errors.Is(e.Err, ErrRequestExpired):
		return fmt.Sprintf("request %d (%s %s) expired at %s: %v", r.ID, r.Action, r.Address, r.Expires.UTC().Format(time.RFC3339), e.Err)
	case errors.Is(e.Err, ErrUnconfirmed):
		return fmt.Sprintf("request %d (%s %s) waits for the address's own confirmation: %v", r.ID, r.Action, r.Address, e.Err)
	}
	return fmt.Sprintf("request %d on %s: %v", r.ID, r.List, e.Err)
}

func (e *RequestError) Unwrap() error { return e.Err }

// Requests returns list's open requests (not those expired), oldest
// first.
func (s *Store) Requests(ctx context.Context, list string) ([]OpenRequestInfo, error) {
	lid, err := listID(ctx, s.db, list)
	if err != nil {
		return nil, err
	}
	return collect(ctx, s.db, "requests of "+list, scanOpenRequest,
		requestColumns+requestsJoin+" WHERE r.list_id = ? AND r.expires > ? AND r.state IN (?, ?) ORDER BY r.created, r.id",
		lid, s.now().Unix(), requestConfirm, requestApprove)
}

// requestColumns are what scanOpenRequest reads, from requestsJoin.
const (
	requestColumns = "SELECT r.id, l.address, r.address, r.action, r.state, r.created, r.expires"
	requestsJoin   = " FROM requests r JOIN lists l ON l.id = r.list_id"
)

func scanOpenRequest(scan func(...any) error) (OpenRequestInfo, error) {
	var r OpenRequestInfo
	var created, expires int64
	err := scan(&r.ID, &r.List, &r.Address, &r.Action, &r.State, &created, &expires)
	r.Created, r.Expires = time.Unix(created, 0), time.Unix(expires, 0)
	return r, err
}

// RequestOutcome is what deciding a request did.
type RequestOutcome struct {
	Request OpenRequestInfo
	// Changed says the membership changed (approve); false: nothing to
	// do (already a member, or not one).
	Changed bool
	// Welcome says the running server now sends the new member the
	// welcome (a subscription that changed the membership).
	Welcome bool
}

// ApproveRequest approves request id of list for by (who decided, e.g.
// "cli:root"), in one transaction: its tokens are used up (as a
// moderator's reply uses them) and the membership changed as it asks;
// a subscription that added the member then waits in state welcome for
// the server's welcome (Welcomes), any other request is deleted. Only a
// request waiting for a moderator can be approved; any other is a
// *RequestError.
func (s *Store) ApproveRequest(ctx context.Context, list string, id int64, by string) (RequestOutcome, error) {
	var o RequestOutcome
	err := s.write(ctx, func(tx *sql.Tx) error {
		o = RequestOutcome{}
		r, lid, err := s.openRequest(ctx, tx, list, id)
		if err != nil {
			return err
		}
		o.Request = r
		if r.State != StateModerator {
			return &RequestError{Request: r, Err: ErrUnconfirmed}
		}
		if _, err := tx.ExecContext(ctx, "UPDATE tokens SET used = ?, action = ?, used_by = ? WHERE request_id = ? AND used = 0",
			s.now().Unix(), "approve", by, id); err != nil {
			return fmt.Errorf("use tokens of request %d: %w", id, err)
		}
		if o.Changed, err = applyRequest(ctx, tx, lid, r.Request); err != nil {
			return err
		}
		if o.Welcome = o.Changed && r.Action == RequestSubscribe; o.Welcome {
			_, err = tx.ExecContext(ctx, "UPDATE requests SET state = ?, expires = ? WHERE id = ?",
				requestWelcome, s.now().Add(welcomeTTL).Unix(), id)
			if err != nil {
				return fmt.Errorf("approve request %d: %w", id, err)
			}
			return nil
		}
		return deleteRequest(ctx, tx, id, false)
	})
	return o, err
}

// RejectRequest deletes request id of list and its tokens, in whatever
// state it is; the membership is left alone and nobody is told (as a
// moderator declines by ignoring the mail). Errors are *RequestError.
func (s *Store) RejectRequest(ctx context.Context, list string, id int64) (OpenRequestInfo, error) {
	var r OpenRequestInfo
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if r, _, err = s.openRequest(ctx, tx, list, id); err != nil {
			return err
		}
		return deleteRequest(ctx, tx, id, true)
	})
	return r, err
}

// openRequest reads request id and checks that it is list's and still
// open.
func (s *Store) openRequest(ctx context.Context, tx *sql.Tx, list string, id int64) (OpenRequestInfo, int64, error) {
	lid, err := listID(ctx, tx, list)
	if err != nil {
		return OpenRequestInfo{}, 0, err
	}
	var rlid int64
	r, err := scanOpenRequest(func(dst ...any) error {
		return tx.QueryRowContext(ctx, requestColumns+", r.list_id"+requestsJoin+" WHERE r.id = ? AND r.state IN (?, ?)", id, requestConfirm, requestApprove).
			Scan(append(dst, &rlid)...)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return r, 0, &RequestError{Request: OpenRequestInfo{Request: Request{ID: id, List: list}}, Err: ErrNoRequest}
	}
	if err != nil {
		return r, 0, fmt.Errorf("look up request %d: %w", id, err)
	}
	if rlid != lid {
		var name string
		if err := tx.QueryRowContext(ctx, "SELECT address FROM lists WHERE id = ?", lid).Scan(&name); err != nil {
			return r, 0, fmt.Errorf("look up list %s: %w", list, err)
		}
		other := r.List
		r.List = name
		return r, 0, &RequestError{Request: r, OtherList: other, Err: ErrNoRequest}
	}
	if !r.Expires.After(s.now()) {
		return r, 0, &RequestError{Request: r, Err: ErrRequestExpired}
	}
	return r, lid, nil
}

// deleteRequest deletes request id, and its tokens if tokens is set (an
// approval keeps them, used, to answer a moderator who replies late).
func deleteRequest(ctx context.Context, tx *sql.Tx, id int64, tokens bool) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM requests WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete request %d: %w", id, err)
	}
	if tokens {
		if _, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE request_id = ?", id); err != nil {
			return fmt.Errorf("delete tokens of request %d: %w", id, err)
		}
	}
	return nil
}

// Welcomes returns the requests approved on the server whose welcome
// no server has sent yet, oldest first.
func (s *Store) Welcomes(ctx context.Context) ([]Request, error) {
	rows, err := collect(ctx, s.db, "welcomes", scanOpenRequest,
		requestColumns+requestsJoin+" WHERE r.state = ? AND r.expires > ? ORDER BY r.id", requestWelcome, s.now().Unix())
	out := make([]Request, len(rows))
	for i, r := range rows {
		out[i] = r.Request
	}
	return out, err
}

// ClaimWelcome marks the welcome of request id as being sent by this
// caller, so that of several servers exactly one sends it, and reports
// whether this caller got it. FinishWelcome ends the claim.
func (s *Store) ClaimWelcome(ctx context.Context, id int64) (bool, error) {
	var got bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE requests SET state = ? WHERE id = ? AND state = ?", requestWelcoming, id, requestWelcome)
		if err != nil {
			return fmt.Errorf("claim welcome of request %d: %w", id, err)
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	return got, err
}

// FinishWelcome ends a claim ClaimWelcome took: done deletes the request
// (the welcome is queued, or there is none to send), else the welcome
// waits for the next try.
func (s *Store) FinishWelcome(ctx context.Context, id int64, done bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if done {
			_, err = tx.ExecContext(ctx, "DELETE FROM requests WHERE id = ? AND state = ?", id, requestWelcoming)
		} else {
			_, err = tx.ExecContext(ctx, "UPDATE requests SET state = ? WHERE id = ? AND state = ?", requestWelcome, id, requestWelcoming)
		}
		if err != nil {
			return fmt.Errorf("finish welcome of request %d: %w", id, err)
		}
		return nil
	})
}
