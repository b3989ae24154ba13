package listmail

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"fanmail/envelope"
)

// BenchmarkDeliverer is what the wrapper costs a fan-out: envelopes of
// 100 members delivered by the next deliverer alone (the baseline), and
// through the wrapper at a domain without lists (every envelope of a
// post but those for members at a list domain) and at a list domain
// (each recipient looked at).
func BenchmarkDeliverer(b *testing.B) {
	for _, c := range []struct{ name, domain string }{
		{"next-alone", "members.example"}, {"other-domain", "members.example"}, {"list-domain", "lists.example.org"},
	} {
		domain := c.domain
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b, "dev@lists.example.org", "")
			f.next.replies = nil
			rcpts := make([]string, 100)
			for i := range rcpts {
				rcpts[i] = fmt.Sprintf("member%03d@%s", i, domain)
			}
			req := envelope.Request{QueueID: "Q", Envelope: envelope.Envelope{Sender: "dev-bounces@lists.example.org", Domain: domain, Recipients: rcpts},
				Size: 10, Open: func() io.Reader { return strings.NewReader("Subject: x\r\n\r\n") }}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			d := f.d
			if c.name == "next-alone" {
				d = f.next // the baseline: the wrapped deliverer alone
			}
			for range b.N {
				f.next.got = f.next.got[:0]
				d.Deliver(ctx, req)
			}
		})
	}
}
