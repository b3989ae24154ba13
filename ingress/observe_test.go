package ingress

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
)

func TestRateLogSuppresses(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	r := &rateLog{out: slog.New(slog.NewJSONHandler(&buf, nil)), perSecond: 3, now: func() time.Time { return now }}
	for range 10 {
		r.log(slog.LevelInfo, "rejected")
	}
	now = now.Add(time.Second)
	r.log(slog.LevelInfo, "rejected")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 3 in the first second and 1 after:\n%s", len(lines), buf.String())
	}
	var last struct {
		Suppressed int `json:"suppressed_before"`
	}
	if err := json.Unmarshal([]byte(lines[3]), &last); err != nil || last.Suppressed != 7 {
		t.Errorf("line after the flood %s: want suppressed_before=7 (%v)", lines[3], err)
	}
}

// A session with refused commands and one accepted post: the counters
// and the log lines say what happened, with the client's address, EHLO
// name and the post's Message-ID.
func TestStatsAndLogLines(t *testing.T) {
	var logs testutil.SyncBuffer
	f := startWith(t, Config{MaxMessageSize: 1 << 20, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	c := dial(t, f.addr)
	if err := c.Mail("poster@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"nobody@lists.example.org", "bad@@x", "announce@lists.example.org"} {
		_ = c.Rcpt(rcpt, nil)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Message-ID: <post1@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	st := f.srv.Stats()
	want := map[Rejection]int64{{"RCPT", "unknown_recipient"}: 1, {"RCPT", "bad_recipient"}: 1}
	if diff := cmp.Diff(want, st.Rejected); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	if st.Accepted != 1 || st.SessionsTotal != 1 {
		t.Errorf("accepted %d, sessions %d; want 1 and 1", st.Accepted, st.SessionsTotal)
	}

	var accepted, rejected int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		switch l["msg"] {
		case "accepted":
			accepted++
			for k, v := range map[string]any{"client": "127.0.0.1", "helo": "client.example.org",
				"from": "poster@example.org", "message_id": "<post1@example.org>"} {
				if l[k] != v {
					t.Errorf("accepted line: %s = %v, want %v", k, l[k], v)
				}
			}
			if l["qid"] == "" || l["size"] == nil {
				t.Errorf("accepted line without qid or size: %s", line)
			}
		case "rejected":
			rejected++
			if l["client"] != "127.0.0.1" || l["command"] != "RCPT" || l["rcpt"] == "" {
				t.Errorf("rejected line: %s", line)
			}
		}
	}
	if accepted != 1 || rejected != 2 {
		t.Errorf("%d accepted and %d rejected lines, want 1 and 2:\n%s", accepted, rejected, logs.String())
	}
}
