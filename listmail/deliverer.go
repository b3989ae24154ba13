package listmail

import (
	"context"
	"io"
	"strings"
	"sync"

	"fanmail/envelope"
	"fanmail/listaddr"
	"fanmail/queuegroups"
)

// Deliverer wraps the queue's deliverer next: recipients that are a
// list's own addresses (Expander.Internal) are handled here, the others
// go to next, and the permanent (5xx) replies next got for a list's
// mail are recorded as its members' bounces. This is the one hook
// between the queue and bounce processing; the queue knows nothing of
// it.
func (s *Service) Deliverer(next queuegroups.Deliverer) queuegroups.Deliverer {
	return queuegroups.Wrap(next, s.deliver)
}

func (s *Service) deliver(ctx context.Context, req envelope.Request, next queuegroups.Deliverer) []envelope.Result {
	if req.IsLocal() {
		return next.Deliver(ctx, req)
	}
	// An envelope's recipients share its domain: outside the list
	// domains, the usual case, none is looked at.
	listDomain, err := s.cfg.Expander.IsListDomain(ctx, req.Domain)
	if err != nil {
		s.log.Error("listmail: cannot tell whether a domain has lists; delivery deferred", "qid", req.QueueID, "domain", req.Domain, "err", err)
		out := make([]envelope.Result, len(req.Recipients))
		for i, rcpt := range req.Recipients {
			out[i] = envelope.Result{Recipient: rcpt, Status: envelope.Deferred, Relay: "listmail",
				Reply: envelope.Reply{Enhanced: "4.3.0", Text: "list store unavailable"}}
		}
		return out
	}
	if !listDomain {
		got := next.Deliver(ctx, req)
		if len(got) == len(req.Recipients) {
			s.observe(ctx, req, got)
		}
		return got
	}
	results := make([]envelope.Result, len(req.Recipients))
	var others []int
	for i, rcpt := range req.Recipients {
		a, ok, err := s.cfg.Expander.Internal(ctx, rcpt)
		switch {
		case err != nil:
			s.log.Error("listmail: cannot tell whether a recipient is a list's own address; deferred", "qid", req.QueueID, "rcpt", rcpt, "err", err)
			results[i] = envelope.Result{Recipient: rcpt, Status: envelope.Deferred, Relay: "listmail",
				Reply: envelope.Reply{Enhanced: "4.3.0", Text: "list store unavailable"}}
		case ok:
			results[i] = s.handle(ctx, incoming{qid: req.QueueID, sender: req.Sender, rcpt: rcpt, addr: a, open: req.Open, size: req.Size})
		default:
			others = append(others, i)
		}
	}
	if len(others) == 0 {
		return results
	}
	sub := req
	if len(others) < len(req.Recipients) {
		sub = req.Only(others)
	}
	got := next.Deliver(ctx, sub)
	if len(got) != len(others) {
		if len(others) == len(req.Recipients) {
			return got // the queue reports the mismatch and defers the envelope
		}
		// The list's own addresses were handled: only the others wait.
		s.log.Error("listmail: delivery returned the wrong number of results; deferring", "qid", req.QueueID,
			"domain", req.Domain, "want", len(others), "got", len(got))
		for _, i := range others {
			results[i] = envelope.Result{Recipient: req.Recipients[i], Status: envelope.Deferred,
				Reply: envelope.Reply{Text: "internal error"}}
		}
		return results
	}
	s.observe(ctx, sub, got)
	if len(others) == len(req.Recipients) {
		return got
	}
	for k, i := range others {
		results[i] = got[k]
	}
	return results
}

// observe records the permanent failures of a list's mail: an envelope
// from a list's bounce address whose recipients got a 5xx reply, or that
// delivery failed for good itself (a 5.x.x without a reply: a null MX,
// a domain that does not exist, a server that lacks what the post
// needs). Temporary failures (a 4xx, no answer, the queue giving up
// after queuereturn) never count.
func (s *Service) observe(ctx context.Context, req envelope.Request, results []envelope.Result) {
	var failed []envelope.Result
	for _, r := range results {
		if r.Status == envelope.Failed && (r.Code >= 500 && r.Code < 600 || r.Code == 0 && strings.HasPrefix(r.Enhanced, "5.")) {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 || req.Sender == "" {
		return
	}
	a, ok, err := s.cfg.Expander.Internal(ctx, req.Sender)
	if err != nil {
		s.log.Error("listmail: cannot tell whether a sender is a list's bounce address; failures not recorded",
			"qid", req.QueueID, "sender", req.Sender, "err", err)
		return
	}
	if !ok || a.Role != listaddr.Bounces {
		return
	}
	for _, r := range failed {
		s.queueReply(ctx, failedReply{qid: req.QueueID, list: a.List, result: r})
	}
}

// streamBody is the Body of a message delivery hands over as a reader
// (Request.Open), for forwarding it without holding it in memory: reads
// in order, as the queue makes them, continue one reader; a read
// elsewhere opens a new one.
type streamBody struct {
	open func() io.Reader
	size int64

	mu  sync.Mutex
	r   io.Reader
	pos int64
}

func newStreamBody(open func() io.Reader, size int64) *streamBody {
	return &streamBody{open: open, size: size}
}

func (b *streamBody) Size() int64 { return b.size }

func (b *streamBody) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off >= b.size {
		return 0, io.EOF
	}
	if b.r == nil || off != b.pos {
		b.r, b.pos = b.open(), 0
		if _, err := io.CopyN(io.Discard, b.r, off); err != nil {
			b.r = nil
			return 0, err
		}
		b.pos = off
	}
	want := p
	if int64(len(want)) > b.size-off {
		want = want[:b.size-off]
	}
	n, err := io.ReadFull(b.r, want)
	b.pos += int64(n)
	if err != nil {
		b.r = nil
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return n, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
