package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// injectResult is what the posting side saw.
type injectResult struct {
	start, end time.Time
	accepted   int
	failed     int
	firstErr   error
}

// inject posts every post to target with clients concurrent SMTP
// sessions, each reusing its connection for post after post as a mass
// mailer does. A post's 250 time is recorded in col as its latency
// reference. A post that fails is retried at most twice on a new
// connection, then counted as failed.
func inject(ctx context.Context, target string, posts []post, clients, size int, col *collector, accepted *atomic.Int64) injectResult {
	res := injectResult{start: time.Now()}
	work := make(chan post)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.failed++
		if res.firstErr == nil {
			res.firstErr = err
		}
	}
	for range max(1, min(clients, len(posts))) {
		wg.Go(func() {
			var c *smtp.Client
			defer func() {
				if c != nil {
					_ = c.Quit()
				}
			}()
			for p := range work {
				var err error
				for range 3 {
					if c == nil {
						if c, err = dialTarget(ctx, target); err != nil {
							continue
						}
					}
					if err = send(c, p, size); err == nil {
						break
					}
					var se *smtp.SMTPError
					if !errors.As(err, &se) || se.Code == 421 {
						c.Close()
						c = nil
					}
				}
				if err != nil {
					fail(fmt.Errorf("post %s: %w", p.id, err))
					col.forget(p.id, p.expect)
					continue
				}
				col.accept(p.id, time.Now())
				accepted.Add(1)
			}
		})
	}
	for _, p := range posts {
		select {
		case work <- p:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	res.end = time.Now()
	res.accepted = int(accepted.Load())
	return res
}

func dialTarget(ctx context.Context, target string) (*smtp.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("connect to target %s: %w", target, err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 2 * time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	if err := c.Hello("client.bench.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO to target %s: %w", target, err)
	}
	return c, nil
}

// send runs one transaction; it returns once the target answered the
// final dot.
func send(c *smtp.Client, p post, size int) error {
	msg := message(p, p.rcpt, size, time.Now())
	if err := c.Mail(posterAddr, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(p.rcpt, nil); err != nil {
		_ = c.Reset()
		return fmt.Errorf("RCPT TO %s: %w", p.rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("message body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}
