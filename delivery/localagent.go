package delivery

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"fanmail/delivery/local"
)

// LocalDomain is the domain of envelopes whose recipients are the
// |program and /file targets of an aliases file: a bracketed name, which
// no real domain can be. Their delivery runs the program or appends to
// the file (package local) instead of speaking SMTP.
const LocalDomain = "[local]"

// deliverLocal delivers each recipient of a local envelope: "|command"
// runs command, "/path" appends to the file.
func (a *Agent) deliverLocal(ctx context.Context, env Envelope) []Result {
	results := make([]Result, len(env.Recipients))
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
		r := Result{Recipient: rcpt, Text: lr.Reason, Relay: "local"}
		switch lr.Status {
		case local.Delivered:
			r.Status, r.Enhanced = Delivered, "2.0.0"
		case local.Deferred:
			r.Status, r.Enhanced = Deferred, "4.3.0"
		default:
			r.Status, r.Enhanced = Failed, "5.3.0"
		}
		if lr.Enhanced != "" {
			r.Enhanced = lr.Enhanced
		}
		results[i] = r
		a.log.LogAttrs(ctx, slog.LevelInfo, "delivery",
			slog.String("qid", env.QueueID), slog.String("rcpt", rcpt), slog.String("domain", LocalDomain),
			slog.String("relay", "local"), slog.String("status", r.Status.String()), slog.String("reply", r.Text))
	}
	return results
}
