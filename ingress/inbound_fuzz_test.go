package ingress

import (
	"bytes"
	"io"
	"net"
	"regexp"
	"testing"
	"time"
)

// bareRCPT matches a command line the guard may rewrite, without its
// line end.
var bareRCPT = regexp.MustCompile(`(?is)^RCPT TO: *<postmaster>( .*)?$`)

// The guard hands on exactly what the client sent, whatever the bytes,
// but for a bare <postmaster> rewritten in a command line: no byte lost,
// added or moved.
func FuzzGuardRead(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<postmaster>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
		"STARTTLS\r\nEHLO x\r\n",
		"BDAT 5 LAST\r\nRCPT TO:<postmaster>\r\n",
		"rcpt to: <PostMaster> NOTIFY=NEVER\r\n",
		"RCPT TO:<postmaster>\n",
		"\r\n\n\r\r\n" + string(bytes.Repeat([]byte("x"), 5000)) + "\r\n",
		"BDAT 4294967295\r\nabc",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		go func() {
			client.Write(in)
			client.Close()
		}()
		defer server.Close()
		g := &guardConn{Conn: server, l: &loadListener{s: &Server{}}, end: time.Now().Add(time.Minute)}
		out, err := io.ReadAll(g)
		if err != nil {
			t.Fatal(err)
		}
		sent, got := bytes.SplitAfter(in, []byte("\n")), bytes.SplitAfter(out, []byte("\n"))
		if len(sent) != len(got) {
			t.Fatalf("handed on %d lines, sent %d:\n%q\n%q", len(got), len(sent), out, in)
		}
		for i := range sent {
			switch {
			case bytes.Equal(sent[i], got[i]):
			case bareRCPT.Match(bytes.TrimRight(sent[i], "\r\n")) && string(got[i]) == "RCPT TO:<"+barePostmaster+">"+
				string(bareRCPT.FindSubmatch(bytes.TrimRight(sent[i], "\r\n"))[1])+"\r\n":
			default:
				t.Fatalf("line %d handed on as %q, sent as %q", i, got[i], sent[i])
			}
		}
	})
}
