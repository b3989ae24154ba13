package expander

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
	"fanmail/internal/testutil"
	"fanmail/listaddr"
	"fanmail/queuegroups"
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
	if len(msg.Message.Parts) != 1 || len(msg.Message.Parts[0].Envelopes) != 1 {
		t.Fatalf("parts %+v", msg.Message.Parts)
	}
	e := msg.Message.Parts[0].Envelopes[0]
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

// TestInternal: the addresses of a list that fanmail handles itself are
// told apart from everything delivery sends out, without a lookup for
// addresses outside the list domains; mail to them from outside becomes
// one envelope to that address in the control group.
func TestInternal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := testStore(t, "news@lists.example.org")
	x := New(store, "fanmail.test", nil).WithRoles(Roles{Postmaster: "admin@example.org",
		ListDomains: func(context.Context) ([]string, error) { return []string{"lists.example.org"}, nil }})
	tests := []struct {
		rcpt string
		want listaddr.Address
		ok   bool
	}{
		{"owner-news@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Owner}, true},
		{"news-owner@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Owner}, true},
		{"News-Bounces@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Bounces}, true},
		{"news-bounces+Bob=x.test@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Bounces, Token: "Bob=x.test"}, true},
		{"news-request@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Request}, true},
		{"news-subscribe@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Subscribe}, true},
		{"news-unsubscribe@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Unsubscribe}, true},
		{"news-confirm+abc@lists.example.org", listaddr.Address{List: "news@lists.example.org", Role: listaddr.Confirm, Token: "abc"}, true},
		{"news@lists.example.org", listaddr.Address{}, false},               // the list: distributed
		{"postmaster@lists.example.org", listaddr.Address{}, false},         // forwarded as it is
		{"other-request@lists.example.org", listaddr.Address{}, false},      // no such list
		{"news-request@elsewhere.example.org", listaddr.Address{}, false},   // not a list domain
		{"owner-news@example.org", listaddr.Address{}, false},               // not a list domain
		{"member@lists.example.org.example.net", listaddr.Address{}, false}, // a member
	}
	for _, tt := range tests {
		got, ok, err := x.Internal(ctx, tt.rcpt)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("Internal(%s) = %+v, %v, %v; want %+v, %v", tt.rcpt, got, ok, err, tt.want, tt.ok)
		}
	}

	for _, rcpt := range []string{"news-request@lists.example.org", "news-bounces+bob=x.test@lists.example.org"} {
		canon, err := x.Lookup(ctx, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := x.Expand(ctx, Post{ID: "Q1", Received: time.Now(), Sender: "bob@x.test", Lists: []string{canon},
			Body: envelope.Bytes("Subject: help\r\n\r\nbody\r\n")})
		if err != nil {
			t.Fatal(err)
		}
		want := []envelope.Envelope{{Sender: "bob@x.test", Group: queuegroups.ControlGroup, Domain: "lists.example.org", Recipients: []string{rcpt}}}
		if len(exp.Message.Parts) != 1 {
			t.Fatalf("%s: %d parts, want 1", rcpt, len(exp.Message.Parts))
		}
		if diff := cmp.Diff(want, exp.Message.Parts[0].Envelopes); diff != "" {
			t.Errorf("%s: envelopes (-want +got):\n%s", rcpt, diff)
		}
	}
	if _, err := x.Lookup(ctx, "news-confirm+"+strings.Repeat("a", 32)+"@lists.example.org"); err == nil {
		t.Error("Lookup of a forged confirmation address succeeded")
	} else if ce := (*CommandError)(nil); !errors.As(err, &ce) || !strings.Contains(ce.Reason, "unknown or has expired") {
		t.Errorf("Lookup of a forged confirmation address: %v, want a CommandError saying it is unknown", err)
	}
}
