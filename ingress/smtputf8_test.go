package ingress

import (
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// The SMTPUTF8 parameter of MAIL is handed to the queue with the message.
func TestSMTPUTF8ReachesQueue(t *testing.T) {
	t.Parallel()
	f := start(t, 1<<20)
	for _, tt := range []struct {
		from string
		utf8 bool
	}{{"josé@example.org", true}, {"poster@example.org", false}} {
		c := dial(t, f.addr)
		if err := c.Mail(tt.from, &smtp.MailOptions{UTF8: tt.utf8}); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("announce@lists.example.org", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(post))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]bool{true, false}, f.modes.allUTF8()); diff != "" {
		t.Errorf("SMTPUTF8 of the queued messages (-want +got):\n%s", diff)
	}
}
