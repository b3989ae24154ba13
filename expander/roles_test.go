package expander

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

func TestRoles(t *testing.T) {
	store := testutil.ListStore(t, t.TempDir(), "news@lists.example.org", "")
	x := New(store, "fanmail.test", nil).WithRoles(Roles{
		Postmaster: "admin@example.org",
		ListDomains: func(ctx context.Context) ([]string, error) {
			all, err := store.Lists(ctx)
			var out []string
			for _, l := range all {
				_, d, _ := strings.Cut(l.Address, "@")
				out = append(out, d)
			}
			return out, err
		},
	})
	ctx := context.Background()
	for _, tt := range []struct{ rcpt, want string }{
		{"postmaster@lists.example.org", "postmaster@lists.example.org"},
		{"PostMaster@Lists.Example.ORG", "postmaster@lists.example.org"},
		{"postmaster", "postmaster"},         // RFC 5321 §4.5.1's bare form
		{"abuse@lists.example.org", ""},      // no abuse_address
		{"postmaster@elsewhere.example", ""}, // not a list domain
		{"news@lists.example.org", "news@lists.example.org"},
	} {
		got, err := x.Lookup(ctx, tt.rcpt)
		switch {
		case tt.want == "" && !errors.Is(err, ErrUnknownRecipient):
			t.Errorf("Lookup(%s) = %q, %v; want ErrUnknownRecipient", tt.rcpt, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("Lookup(%s) = %q, %v; want %q", tt.rcpt, got, err, tt.want)
		}
	}
	msg, err := x.Expand(ctx, Post{ID: "Q1", Received: time.Now(), Sender: "someone@example.org",
		Lists: []string{"postmaster@lists.example.org"}, Body: envelope.Bytes("Subject: hi\r\n\r\nhi\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Parts) != 1 || len(msg.Parts[0].Envelopes) != 1 {
		t.Fatalf("parts %+v", msg.Parts)
	}
	e := msg.Parts[0].Envelopes[0]
	if e.Sender != "MAILER-DAEMON@fanmail.test" || len(e.Recipients) != 1 || e.Recipients[0] != "admin@example.org" {
		t.Errorf("postmaster mail goes from %s to %v, want MAILER-DAEMON@fanmail.test to admin@example.org", e.Sender, e.Recipients)
	}
	// A new list's domain gets its postmaster once the store changes.
	if err := store.CreateList(ctx, "team@other.example", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * versionTTL)
	if got, err := x.Lookup(ctx, "postmaster@other.example"); err != nil || got != "postmaster@other.example" {
		t.Errorf("after a list at other.example: %q, %v", got, err)
	}
}
