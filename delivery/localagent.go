package delivery

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"fanmail/delivery/local"
	"fanmail/envelope"
)

// deliverLocal delivers each recipient of a local envelope
// (envelope.LocalDomain), with package local: "|command"
// runs command, "/path" appends to the file.
func (a *Agent) deliverLocal(ctx context.Context, env envelope.Request) []envelope.Result {
	results := make([]envelope.Result, len(env.Recipients))
	for i, rcpt := range env.Recipients {
		req := local.Request{Message: env.Open(), Sender: env.Sender, Recipient: rcpt, Cred: a.cfg.ProgramCred}
		var lr local.Result
		switch {
		case strings.HasPrefix(rcpt, "|"):
			lr = local.RunProgram(ctx, rcpt[1:], req, a.cfg.ProgramTimeout)
		case strings.HasPrefix(rcpt, "/"):
			lr = local.AppendFile(ctx, rcpt, req, time.Now(), a.cfg.ProgramTimeout)
		default:
			lr = local.Result{Status: local.Failed, Reason: "not a |program or /file target"}
		}
		r := envelope.Result{Recipient: rcpt, Reply: envelope.Reply{Text: lr.Reason}, Relay: "local"}
		switch lr.Status {
		case local.Delivered:
			r.Status, r.Enhanced = envelope.Delivered, "2.0.0"
		case local.Deferred:
			r.Status, r.Enhanced = envelope.Deferred, "4.3.0"
		default:
			r.Status, r.Enhanced = envelope.Failed, "5.3.0"
		}
		if lr.Enhanced != "" {
			r.Enhanced = lr.Enhanced
		}
		results[i] = r
		a.log.LogAttrs(ctx, slog.LevelInfo, "delivery",
			slog.String("qid", env.QueueID), slog.String("rcpt", rcpt), slog.String("domain", envelope.LocalDomain),
			slog.String("relay", "local"), slog.String("status", r.Status.String()), slog.String("reply", r.Text))
	}
	return results
}
