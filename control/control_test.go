package control

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/queuegroups"
)

// TestSocketServesTheQueue runs the queue tools' calls against a real
// spool over a real unix socket.
func TestSocketServesTheQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := queuegroups.Open(queuegroups.Config{
		Groups: []queuegroups.GroupConfig{
			{Name: queuegroups.DefaultGroup, Dirs: []string{filepath.Join(dir, "q")}},
			{Name: queuegroups.ControlGroup, Dirs: []string{filepath.Join(dir, "c")}},
		},
		RetryMin: time.Minute, RetryMax: time.Hour, QueueReturn: time.Hour,
	}, nil) // runners never start: the message stays queued
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	id := queuegroups.NewIDSource().Next()
	m := &queuegroups.Message{ID: id, Received: time.Now(), Body: envelope.Bytes("Subject: x\r\n\r\nx\r\n"),
		Parts: []queuegroups.Part{{Envelopes: []envelope.Envelope{
			{Sender: "owner-l@example.org", Domain: "a.test", Recipients: []string{"u1@a.test", "u2@a.test"}},
		}}}}
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "control.sock")
	if _, err := Dial(sock); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Dial with no server = %v, want ErrNoServer", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, sock, q, nil); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Summary(5, 10)
	if err != nil || len(sum) != 2 || sum[0].Recipients != 2 || len(sum[0].List) != 1 || sum[0].List[0].ID != id {
		t.Fatalf("Summary = %+v, %v; want the default group with the one message", sum, err)
	}
	md, err := c.Show(id)
	if err != nil || len(md.Envelopes) != 1 || md.Envelopes[0].Sender != "owner-l@example.org" || len(md.Envelopes[0].Recipients) != 2 {
		t.Fatalf("Show = %+v, %v", md, err)
	}
	if _, err := c.Show("NOSUCHID"); err == nil || !strings.Contains(err.Error(), "no such message") {
		t.Errorf("Show of an unknown ID: %v, want the queue's own error", err)
	}
	if _, err := c.Flush("nosuchgroup", ""); err == nil || !strings.Contains(err.Error(), "no such queue group") {
		t.Errorf("Flush of an unknown group: %v", err)
	}
	if moved, err := c.Flush("", ""); err != nil || moved != 0 {
		t.Errorf("Flush = %d, %v; want nothing deferred to move", moved, err)
	}
	if dropped, err := c.Delete(id); err != nil || dropped != 2 {
		t.Errorf("Delete = %d, %v; want 2 pending recipients dropped", dropped, err)
	}
	if s := q.Stats(); s.Messages != 0 {
		t.Errorf("after Delete the queue holds %+v", s)
	}
}
