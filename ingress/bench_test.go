package ingress

import (
	"strings"
	"testing"
)

// BenchmarkReceivePost measures one post through a session: the guard
// hands go-smtp the client's bytes line by line, then the body is
// spooled and the message queued (fsync included).
func BenchmarkReceivePost(b *testing.B) {
	for _, size := range []struct {
		name  string
		lines int
	}{{"4KB", 50}, {"4MB", 50000}} {
		b.Run(size.name, func(b *testing.B) {
			f := startWith(b, Config{MaxMessageSize: 8 << 20})
			msg := post + strings.Repeat(strings.Repeat("x", 78)+"\r\n", size.lines)
			b.SetBytes(int64(len(msg)))
			c := dial(b, f.addr)
			b.ResetTimer()
			for range b.N {
				if err := postData(c, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
