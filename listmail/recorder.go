package listmail

import (
	"context"
	"time"

	"fanmail/bounces"
	"fanmail/envelope"
)

// The 5xx replies of a fan-out are recorded in batches: one store
// transaction (one disk flush, one change of the store's version, which
// every cache of the expander follows) per list every recordEvery,
// rather than one per failed recipient in the middle of delivery. A
// reply waits at most that long in memory; one that finds the queue
// full is logged and not recorded (it is evidence, not mail, and the
// member's next failure counts again).

const (
	recorderQueue = 4096                   // replies waiting, at most
	recordEvery   = 100 * time.Millisecond // how often they are written
	recordBatch   = 1024                   // or as soon as this many wait
)

// failedReply is a 5xx reply delivery got for a member of list.
type failedReply struct {
	qid, list string
	result    envelope.Result
}

// queueReply hands fr to the recorder while Run runs, and records it at
// once otherwise.
func (s *Service) queueReply(ctx context.Context, fr failedReply) {
	if !s.recording.Load() {
		s.recordReplies(ctx, []failedReply{fr})
		return
	}
	select {
	case s.replies <- fr:
	default:
		s.log.Warn("listmail: the bounce recorder is behind; a 5xx reply was not recorded", "qid", fr.qid, "list", fr.list,
			"rcpt", fr.result.Recipient, "reply", fr.result.Text)
	}
}

// recordLoop writes the waiting replies in batches until ctx ends, and
// then what is left.
func (s *Service) recordLoop(ctx context.Context) {
	t := time.NewTicker(recordEvery)
	defer t.Stop()
	var batch []failedReply
	flush := func(ctx context.Context) {
		if len(batch) > 0 {
			s.recordReplies(ctx, batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case fr := <-s.replies:
			if batch = append(batch, fr); len(batch) >= recordBatch {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		case <-ctx.Done():
			s.recording.Store(false)
			for {
				select {
				case fr := <-s.replies:
					batch = append(batch, fr)
					continue
				default:
				}
				break
			}
			flush(context.WithoutCancel(ctx))
			return
		}
	}
}

// recordReplies scores a batch of replies, one transaction per list.
func (s *Service) recordReplies(ctx context.Context, batch []failedReply) {
	byList := map[string][]failure{}
	var order []string
	for _, fr := range batch {
		r := fr.result
		rc, err := bounces.FromReply(r.Recipient, true, r.Code, r.Enhanced, r.Text, r.Host)
		if err != nil {
			continue
		}
		if _, ok := byList[fr.list]; !ok {
			order = append(order, fr.list)
		}
		byList[fr.list] = append(byList[fr.list], failure{qid: fr.qid, rc: rc, source: "smtp"})
	}
	for _, list := range order {
		settings, err := s.settings(ctx, list)
		if err == nil {
			_, err = s.recordAll(ctx, list, settings, byList[list])
		}
		if err != nil && ctx.Err() == nil {
			s.log.Error("listmail: cannot record bounces", "list", list, "replies", len(byList[list]), "err", err)
		}
	}
}
