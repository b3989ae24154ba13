package delivery

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"fanmail/envelope"
)

// scripted is a raw SMTP server speaking a scripted dialogue, for what
// go-smtp's server will not do: refuse to answer before a whole pipelined
// group has arrived, notice a client that pipelines without PIPELINING,
// answer DATA with 354 when no recipient was accepted, or hang up
// mid-transaction.
type scripted struct {
	t  testing.TB
	ln net.Listener
	// ext are the EHLO keywords offered.
	ext []string
	// groups makes the server read MAIL..DATA (and a leading RSET) as one
	// group before answering any of it, as only a pipelining client can
	// satisfy.
	groups bool
	// reply overrides the reply to a command line ("." for end of data);
	// "" keeps the default, "hangup" closes the connection.
	reply func(cmd string) string

	mu         sync.Mutex
	conns      int
	batches    [][]string // command groups as received (groups mode)
	commands   []string
	messages   []string // bodies received
	violations int      // commands that arrived before the previous reply
}

func newScripted(t testing.TB, ip string, s *scripted) *scripted {
	t.Helper()
	s.t = t
	s.ln = acceptLoop(t, ip+":0", func(c net.Conn) {
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		go s.serve(c)
	})
	return s
}

func (s *scripted) addr() string { return s.ln.Addr().String() }

func (s *scripted) stats() (conns int, cmds []string, msgs []string, batches [][]string, violations int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, append([]string(nil), s.commands...), append([]string(nil), s.messages...),
		append([][]string(nil), s.batches...), s.violations
}

func (s *scripted) answer(cmd string) string {
	if s.reply != nil {
		if r := s.reply(cmd); r != "" {
			return r
		}
	}
	verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
	switch {
	case verb == "EHLO":
		lines := append([]string{"scripted.test"}, s.ext...)
		var b strings.Builder
		for i, l := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			b.WriteString("250" + sep + l + "\r\n")
		}
		return strings.TrimSuffix(b.String(), "\r\n")
	case verb == "DATA":
		return "354 go ahead"
	case verb == ".":
		return "250 2.0.0 queued"
	case verb == "QUIT":
		return "221 2.0.0 bye"
	case verb == "HELO" || verb == "MAIL" || verb == "RCPT" || verb == "RSET" || verb == "NOOP":
		return "250 2.0.0 ok"
	}
	return "500 5.5.1 unknown command"
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	send := func(line string) bool {
		if line == "hangup" {
			return false
		}
		w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	read := func() (string, bool) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil {
			return "", false
		}
		return strings.TrimRight(l, "\r\n"), true
	}
	if !send("220 scripted.test ESMTP") {
		return
	}
	for {
		cmd, ok := read()
		if !ok {
			return
		}
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		batch := []string{cmd}
		if s.groups && (verb == "MAIL" || verb == "RSET") {
			for verb != "DATA" {
				if cmd, ok = read(); !ok {
					return
				}
				verb = strings.ToUpper(cmd)
				batch = append(batch, cmd)
			}
		}
		s.mu.Lock()
		if r.Buffered() > 0 && !s.groups {
			s.violations++
		}
		s.commands = append(s.commands, batch...)
		if len(batch) > 1 {
			s.batches = append(s.batches, batch)
		}
		s.mu.Unlock()
		for _, cm := range batch {
			reply := s.answer(cm)
			if !send(reply) {
				return
			}
			if strings.ToUpper(cm) == "QUIT" {
				return
			}
			if strings.ToUpper(cm) == "DATA" && strings.HasPrefix(reply, "354") {
				var body strings.Builder
				for {
					l, ok := read()
					if !ok {
						return
					}
					if l == "." {
						break
					}
					body.WriteString(l + "\n")
				}
				s.mu.Lock()
				s.messages = append(s.messages, body.String())
				s.mu.Unlock()
				if !send(s.answer(".")) {
					return
				}
			}
		}
	}
}

// scriptedAgent is an agent routing example.test to s.
func scriptedAgent(t *testing.T, s *scripted, tweak func(*Config)) *Agent {
	t.Helper()
	return routedAgent(t, s.addr(), tweak)
}

// deliverScripted delivers env through a scripted server that offers
// ext and returns the results and the commands the server got.
func deliverScripted(t *testing.T, ext []string, env envelope.Request) ([]envelope.Result, []string) {
	t.Helper()
	s := newScripted(t, "127.0.0.1", &scripted{ext: ext})
	res := scriptedAgent(t, s, nil).Deliver(ctxT(t), env)
	_, cmds, _, _, _ := s.stats()
	return res, cmds
}
