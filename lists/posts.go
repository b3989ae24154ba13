package lists

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Posts the server has answered 250 for and not distributed live in the
// store, body and all, so that they survive restarts, that the CLI of
// another process can act on them, and that (with a shared store) any
// node can distribute them. A post is in one of three states:
//
//   - held: waiting for a moderator (mod approve/reject/discard, or a
//     moderator's reply to the notice); it expires after hold_days.
//   - accepted: to be distributed as if it had just arrived: approved by
//     a moderator, or taken while a DMARC lookup failed. The server
//     claims it (Claim), queues it and deletes it (DeletePost); a failed
//     attempt is retried later (Retry). It expires like a held post.
//   - rejected: a moderator rejected it; the server claims it, sends the
//     poster one notice, and deletes it.
//
// A discarded post is deleted at once.

// PostState is where a stored post stands.
type PostState string

const (
	PostHeld     PostState = "held"
	PostAccepted PostState = "accepted"
	PostRejected PostState = "rejected"
)

// ErrNoPost means no stored post has the ID: it never existed, was
// distributed, discarded or expired.
var ErrNoPost = errors.New("no such held post")

// ErrDecided means the post was already decided (approved, rejected or
// discarded) and the decision asked for cannot be applied.
var ErrDecided = errors.New("post already decided")

// chunkSize is the size of the rows a post's body is stored in: a body
// is written and read a chunk at a time, never whole.
const chunkSize = 256 << 10

// Post is a stored post, without its body.
type Post struct {
	ID         int64
	List       string
	State      PostState
	Reason     string    // why it waits, for `fanmail mod show` and the log
	QueueID    string    // the queue ID the SMTP client was given
	Received   time.Time // when the post arrived
	Sender     string    // MAIL FROM; "" is the null sender
	From       string    // the From: address, "" if it did not parse
	Subject    string
	Helo       string
	RemoteAddr string
	Size       int64
	Expires    time.Time
	NextTry    time.Time // accepted: not before
	Notified   bool      // held: the moderators have been notified
	DecidedBy  string    // who approved or rejected it
	Note       string    // rejected: the reason the poster is given
	Claim      string    // the queue ID of the message being made from it; "" if none
	SMTPUTF8   bool      // MAIL FROM carried SMTPUTF8 (RFC 6531)
}

// AddPost stores p (State, Reason and the arrival fields; the rest is
// ignored) with the size bytes read from body, in one transaction, and
// returns its ID. The body is read and written a chunk at a time.
func (s *Store) AddPost(ctx context.Context, p Post, body io.Reader) (int64, error) {
	if p.State != PostHeld && p.State != PostAccepted {
		return 0, fmt.Errorf("add post: state %q: a new post is held or accepted", p.State)
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		lid, err := listID(ctx, tx, p.List)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO posts(list_id, state, reason, queue_id, received,
			sender, from_addr, subject, helo, remote_addr, size, expires, smtputf8)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id`,
			lid, string(p.State), p.Reason, p.QueueID, p.Received.UnixNano(), p.Sender, p.From, p.Subject,
			p.Helo, p.RemoteAddr, p.Expires.Unix(), boolInt(p.SMTPUTF8)).Scan(&id)
		if err != nil {
			return fmt.Errorf("store post %s: %w", p.QueueID, err)
		}
		size, err := writeChunks(ctx, tx, id, body)
		if err != nil {
			return fmt.Errorf("store post %s: %w", p.QueueID, err)
		}
		_, err = tx.ExecContext(ctx, "UPDATE posts SET size = ? WHERE id = ?", size, id)
		return err
	})
	return id, err
}

func writeChunks(ctx context.Context, tx *sql.Tx, id int64, body io.Reader) (int64, error) {
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO post_chunks(post_id, seq, data) VALUES(?, ?, ?)")
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	buf := make([]byte, chunkSize)
	var size int64
	for seq := 0; ; seq++ {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if _, err := stmt.ExecContext(ctx, id, seq, buf[:n]); err != nil {
				return 0, err
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return size, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read body: %w", err)
		}
	}
}

const postColumns = `p.id, l.address, p.state, p.reason, p.queue_id, p.received, p.sender, p.from_addr,
	p.subject, p.helo, p.remote_addr, p.size, p.expires, p.next_try, p.notified, p.decided_by, p.note, p.claim,
	p.smtputf8`

func scanPost(scan func(...any) error) (Post, error) {
	var p Post
	var received, expires, next int64
	err := scan(&p.ID, &p.List, &p.State, &p.Reason, &p.QueueID, &received, &p.Sender, &p.From,
		&p.Subject, &p.Helo, &p.RemoteAddr, &p.Size, &expires, &next, &p.Notified, &p.DecidedBy, &p.Note, &p.Claim,
		&p.SMTPUTF8)
	if err != nil {
		return Post{}, err
	}
	p.Received = time.Unix(0, received)
	p.Expires = time.Unix(expires, 0)
	if next != 0 {
		p.NextTry = time.Unix(next, 0)
	}
	return p, nil
}

// GetPost returns the stored post id, or an error wrapping ErrNoPost.
func (s *Store) GetPost(ctx context.Context, id int64) (Post, error) {
	return getPost(ctx, s.db, id)
}

func getPost(ctx context.Context, q queryer, id int64) (Post, error) {
	row := q.QueryRowContext(ctx, "SELECT "+postColumns+" FROM posts p JOIN lists l ON l.id = p.list_id WHERE p.id = ?", id)
	p, err := scanPost(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Post{}, fmt.Errorf("post %d: %w", id, ErrNoPost)
	}
	if err != nil {
		return Post{}, fmt.Errorf("read post %d: %w", id, err)
	}
	return p, nil
}

// PostFilter selects stored posts; the zero value selects all.
type PostFilter struct {
	List  string    // "" = every list
	State PostState // "" = every state
	// Due selects posts the server has work for at this time: held ones
	// not yet notified, accepted ones whose next try is due, rejected
	// ones; unclaimed in every case. Zero: no such condition.
	Due time.Time
	// Claimed selects only posts with a claim (for recovery at start).
	Claimed bool
	// From selects posts whose From: address or envelope sender is
	// this address, compared case-insensitively (on SQLite, only ASCII
	// letters); "" = any.
	From string
}

// Posts returns the stored posts that f selects, oldest first.
func (s *Store) Posts(ctx context.Context, f PostFilter) ([]Post, error) {
	q := "SELECT " + postColumns + " FROM posts p JOIN lists l ON l.id = p.list_id WHERE TRUE"
	var args []any
	if f.List != "" {
		id, err := listID(ctx, s.db, f.List)
		if err != nil {
			return nil, err
		}
		q += " AND p.list_id = ?"
		args = append(args, id)
	}
	if f.State != "" {
		q += " AND p.state = ?"
		args = append(args, string(f.State))
	}
	if !f.Due.IsZero() {
		q += ` AND p.claim = '' AND ((p.state = 'held' AND p.notified = 0)
			OR (p.state = 'accepted' AND p.next_try <= ?) OR p.state = 'rejected')`
		args = append(args, f.Due.Unix())
	}
	if f.Claimed {
		q += " AND p.claim != ''"
	}
	if f.From != "" {
		q += " AND (lower(p.from_addr) = ? OR lower(p.sender) = ?)"
		from := strings.ToLower(f.From)
		args = append(args, from, from)
	}
	return collect(ctx, s.db, "read posts", scanPost, q+" ORDER BY p.id", args...)
}

// CopyPostBody writes the body of post id (the message as received) to
// w, a chunk at a time, and returns the bytes written.
func (s *Store) CopyPostBody(ctx context.Context, id int64, w io.Writer) (int64, error) {
	var n int64
	for seq := 0; ; seq++ {
		var data []byte
		err := s.db.QueryRowContext(ctx, "SELECT data FROM post_chunks WHERE post_id = ? AND seq = ?", id, seq).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			if seq == 0 {
				if _, err := s.GetPost(ctx, id); err != nil {
					return 0, err
				}
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read post %d: %w", id, err)
		}
		k, err := w.Write(data)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// PostHeader returns the header of post id, up to the empty line that
// ends it, reading at most limit bytes of the body.
func (s *Store) PostHeader(ctx context.Context, id int64, limit int) ([]byte, error) {
	w := &headerWriter{limit: limit}
	_, err := s.CopyPostBody(ctx, id, w)
	if err != nil && !errors.Is(err, errHeaderDone) {
		return nil, err
	}
	return w.buf.Bytes(), nil
}

var errHeaderDone = errors.New("header read")

// headerWriter keeps what is written up to the end of the header.
type headerWriter struct {
	buf   bytes.Buffer
	limit int
}

func (h *headerWriter) Write(p []byte) (int, error) {
	start := max(h.buf.Len()-3, 0)
	h.buf.Write(p)
	b := h.buf.Bytes()[start:]
	end := -1
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		end = i + 2
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i+3 < end) {
		end = i + 3
	}
	if end >= 0 {
		h.buf.Truncate(start + end)
		return len(p), errHeaderDone
	}
	if h.buf.Len() >= h.limit {
		h.buf.Truncate(h.limit)
		return len(p), errHeaderDone
	}
	return len(p), nil
}

// boolInt is b as the INTEGER 0 or 1 both stores keep flags in.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
