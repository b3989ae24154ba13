package ingress

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
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

// BenchmarkGuardRead measures what handing go-smtp a message one line at
// a time costs: a 4 MB body of 80-byte lines read through go-smtp's
// kind of buffered reader, straight from the connection or through the
// guard.
func BenchmarkGuardRead(b *testing.B) {
	body := []byte(strings.Repeat(strings.Repeat("x", 78)+"\r\n", 50000))
	for _, guarded := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "guard"}[guarded]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for range b.N {
				client, server := net.Pipe()
				go func() {
					client.Write(body)
					client.Close()
				}()
				var r io.Reader = server
				if guarded {
					g := &guardConn{Conn: server, l: &loadListener{s: &Server{}}, end: time.Now().Add(time.Hour)}
					g.in.mode, g.in.dataStart = inData, true
					r = g
				}
				br := bufio.NewReaderSize(r, 4096)
				for {
					if _, err := br.ReadSlice('\n'); err != nil {
						break
					}
				}
				server.Close()
			}
		})
	}
}
