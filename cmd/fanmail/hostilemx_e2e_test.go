package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"fanmail/internal/fakenet"
	"fanmail/internal/testutil"
)

// TestHostileMXCostsLittle points one domain of a list at a hostile MX
// and posts to the list through the real binary: a greeting line that
// never ends, or a greeting of 100,000 continuation lines. The server's
// peak RSS grows by at most a few MB (replies are read under a bound of
// 4096 octets a line and 100 lines), the hostile domain's recipient is
// deferred, and every other domain's members get the post.
func TestHostileMXCostsLittle(t *testing.T) {
	t.Parallel()
	hostile := map[string]func(w *bufio.Writer){
		"endless line": func(w *bufio.Writer) {
			w.WriteString("220 ")
			line := strings.Repeat("x", 64<<10)
			for {
				if _, err := w.WriteString(line); err != nil {
					return
				}
			}
		},
		"100000 continuation lines": func(w *bufio.Writer) {
			for i := range 100_000 {
				if _, err := fmt.Fprintf(w, "220-hostile greeting line %d\r\n", i); err != nil {
					return
				}
			}
			w.WriteString("220 end\r\n")
			w.Flush()
			time.Sleep(time.Minute) // then hold the connection open
		},
	}
	for name, greet := range hostile {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			domains := []string{"good1.test", "good2.test"}
			n := newFakeNet(t, domains, nil)
			ip := startHostileMX(t, n.port, greet)
			n.dns.SetMX("hostile.test", 300, fakenet.MX{Pref: 10, Host: "mx.hostile.test"})
			n.dns.SetA("mx.hostile.test", 300, ip)

			cfg := n.newConfig(t, "")
			members := makeList(t, cfg, e2eList, domains, []int{20, 20})
			fanmailCLI(t, cfg, "", "member", "add", e2eList, "victim@hostile.test")
			p := startFanmail(t, cfg)
			base := peakRSS(t, p.cmd.Process.Pid)

			postTo(t, p.addr, members[0], e2eList, e2ePost)
			n.waitDelivered(t, len(members), time.Minute, p)
			mustLog(t, p, "rcpt=victim@hostile.test", time.Minute) // the hostile domain's recipient's delivery line
			peak := peakRSS(t, p.cmd.Process.Pid)
			p.stop(t)

			n.wantEachOnce(t, members)
			var victim string
			for _, line := range strings.Split(p.log.String(), "\n") {
				if strings.Contains(line, "rcpt=victim@hostile.test") {
					victim = line
				}
			}
			if !strings.Contains(victim, "status=deferred") {
				t.Errorf("hostile domain's recipient: %s\nwant status=deferred", victim)
			}
			t.Logf("peak RSS %d MB, %d MB before the post; %s", peak>>20, base>>20, victim)
			if grew := peak - base; grew > 8<<20 {
				t.Errorf("peak RSS grew by %d MB past a hostile MX, want at most 8 MB", grew>>20)
			}
		})
	}
}

// startHostileMX listens on a loopback address of its own at port and
// answers each connection with greet, ignoring whatever the client says.
// It returns the address's IP.
func startHostileMX(t *testing.T, port int, greet func(w *bufio.Writer)) string {
	t.Helper()
	var ln net.Listener
	var err error
	for try := 0; ; try++ {
		ip := fmt.Sprintf("127.251.%d.%d", 1+try/250, 1+try%250)
		if ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port)); err == nil {
			break
		}
		if try == 500 {
			t.Fatal(err)
		}
	}
	testutil.AcceptLoop(t, ln, func(c net.Conn) {
		go func() {
			defer c.Close()
			go io.Copy(io.Discard, c) // the client's commands, unanswered
			w := bufio.NewWriterSize(c, 64<<10)
			greet(w)
		}()
	})
	return ln.Addr().(*net.TCPAddr).IP.String()
}
