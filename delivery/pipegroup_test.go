package delivery

import (
	"fmt"
	"testing"
)

// TestFullTransactionIsOnePipelinedGroup: a transaction of the default
// 100 recipients goes out as one pipelined group, MAIL to DATA, and on a
// cached connection with its RSET too. Splitting it costs a round trip
// per transaction (half as much again on a slow link); this server does
// not answer before the whole group is in, so a split group would hang.
func TestFullTransactionIsOnePipelinedGroup(t *testing.T) {
	t.Parallel()
	s := newScripted(t, "127.0.0.1", &scripted{ext: pipeExt, groups: true})
	a := scriptedAgent(t, s, nil)
	rcpts := make([]string, DefaultConfig().RcptsPerTxn)
	for i := range rcpts {
		rcpts[i] = fmt.Sprint("r", i)
	}
	for range 2 {
		checkBriefs(t, repeat(sent, len(rcpts)), a.Deliver(ctxT(t), request("example.test", rcpts...)))
	}
	conns, _, msgs, batches, _ := s.stats()
	if conns != 1 || len(msgs) != 2 {
		t.Fatalf("%d connections and %d messages; want 1 (reused) and 2", conns, len(msgs))
	}
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	// MAIL, 100 RCPTs, DATA; then RSET, MAIL, 100 RCPTs, DATA.
	if len(batches) != 2 || sizes[0] != len(rcpts)+2 || sizes[1] != len(rcpts)+3 || batches[1][0] != "RSET" {
		t.Errorf("pipelined groups of %v commands; want [%d %d], the second starting with RSET", sizes, len(rcpts)+2, len(rcpts)+3)
	}
}
