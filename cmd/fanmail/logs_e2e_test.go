package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// With --log-format json every line is a JSON object; the accepted line
// names the client, its EHLO name, the sender, the Message-ID, the size
// and the queue ID, a refused recipient has its own line, and each
// recipient its delivery line.
func TestJSONLogs(t *testing.T) {
	domains := []string{"example.test"}
	n := newFakeNet(t, domains, nil)
	cfg := n.writeConfig(t, t.TempDir(), "")
	makeList(t, cfg, "news@lists.test", domains, []int{2})
	p := startFanmailArgs(t, nil, "serve", "--config", cfg, "--log-format", "json", "--log-level", "info")

	c := mailFrom(t, p.addr, "poster.example.org", "poster@example.org")
	if err := c.Rcpt("nobody@lists.test", nil); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	c.Close()
	id := postTo(t, p.addr, "poster@example.org", "news@lists.test",
		"Message-ID: <json-1@example.org>\r\nSubject: hi\r\n\r\nhello\r\n")
	n.waitDelivered(t, 2, 20*time.Second, p)
	p.stop(t)

	var accepted, rejected, delivery int
	for _, line := range strings.Split(strings.TrimSpace(p.log.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		switch l["msg"] {
		case "accepted":
			accepted++
			want := map[string]any{"qid": id, "client": "127.0.0.1", "helo": "poster.example.org",
				"from": "poster@example.org", "message_id": "<json-1@example.org>"}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("accepted line %s = %v, want %v", k, l[k], v)
				}
			}
			if l["size"] == nil {
				t.Errorf("accepted line without size: %s", line)
			}
		case "rejected":
			rejected++
			if l["rcpt"] != "nobody@lists.test" || l["reason"] != "unknown_recipient" || l["client"] != "127.0.0.1" {
				t.Errorf("rejected line: %s", line)
			}
		case "delivery":
			delivery++
		}
	}
	if accepted != 1 || rejected != 1 || delivery != 2 {
		t.Errorf("%d accepted, %d rejected, %d delivery lines; want 1, 1, 2", accepted, rejected, delivery)
	}
}

// A bad log level or format is refused before anything starts.
func TestBadLogOptions(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--log-format", "xml"}} {
		out, err := runBinary(t, append([]string{"serve", "--data-dir", t.TempDir()}, args...)...)
		if err == nil || !strings.Contains(out, args[0]) {
			t.Errorf("fanmail serve %s: %v %q, want an error naming the option", strings.Join(args, " "), err, out)
		}
	}
}
