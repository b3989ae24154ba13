package queuegroups

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"fanmail/envelope"
)

// halfway settles the first half of each envelope through Progress, as
// a first transaction would, then waits for release.
type halfway struct {
	reported chan struct{}
	release  chan struct{}
}

func (h *halfway) Deliver(ctx context.Context, req envelope.Request) []envelope.Result {
	io.Copy(io.Discard, req.Open())
	half := len(req.Recipients) / 2
	var idx []int
	var res []envelope.Result
	for i := range half {
		idx = append(idx, i)
		res = append(res, envelope.Result{Recipient: req.Recipients[i], Status: envelope.Delivered, Reply: envelope.Reply{Code: 250, Text: "ok"}})
	}
	req.Progress(idx, res)
	close(h.reported)
	<-h.release
	out := make([]envelope.Result, len(req.Recipients))
	for i, r := range req.Recipients {
		out[i] = envelope.Result{Recipient: r, Status: envelope.Delivered, Reply: envelope.Reply{Code: 250}}
	}
	return out
}

// TestProgressSurvivesACrash: the server "dies" (its directory is copied
// as it is on disk) after the first transaction of an attempt was
// recorded: a restart from that copy sends only the other half, and
// counts the attempt that never ended as a strike.
func TestProgressSurvivesACrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	h := &halfway{reported: make(chan struct{}), release: make(chan struct{})}
	q := started(t, cfg, h)
	m := testMessage(NewIDSource(), 1, 6)
	if err := q.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	<-h.reported
	crashed := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(crashed, "lock"))
	close(h.release)

	cfg2 := testConfig(crashed)
	rec := newRecorder(nil)
	q2 := opened(t, cfg2, rec)
	if s := q2.Stats(); s.Recipients != 3 {
		t.Fatalf("after the crash %d recipients pending, want the 3 the first transaction did not settle", s.Recipients)
	}
	md, err := q2.Show(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e := md.Envelopes[0]; e.Strikes != 1 || e.Recipients[0].Status != "delivered" || e.Recipients[5].Status != "pending" {
		t.Errorf("after the crash: %+v", e)
	}
	q2.Start()
	waitFor(t, "the rest", func() bool { return q2.Stats().Messages == 0 })
	rcpts := m.Parts[0].Envelopes[0].Recipients
	for i, r := range rcpts {
		want := 0
		if i >= 3 {
			want = 1
		}
		if got := rec.count(r); got != want {
			t.Errorf("%s delivered %d times after the restart, want %d", r, got, want)
		}
	}
}
