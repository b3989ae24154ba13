package expander

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/envelope"
)

// Mail fanmail forwards goes out from an address of fanmail's, never
// the poster's, so that nothing bounces to whoever the poster claims to
// be; a post with the null sender (a DSN) keeps it.
func TestForwardSenders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "aliases")
	if err := os.WriteFile(file, []byte("help: alice@x.test\nstaff: bob@x.test\nowner-staff: boss@x.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := testStore(t, "news@lists.example.org")
	withBounce := func(bounce string) *Expander {
		a, err := LoadAliases(AliasConfig{Files: []string{file}, LocalDomains: []string{"example.org"}, BounceAddress: bounce})
		if err != nil {
			t.Fatal(err)
		}
		return New(store, "fanmail.test", nil).WithAliases(a)
	}
	tests := []struct {
		name   string
		bounce string // [aliases] bounce_address
		rcpt   string
		sender string
		want   string
	}{
		{"owner- address", "", "owner-news@lists.example.org", "poster@p.test", "news-bounces@lists.example.org"},
		// Commands go to listmail from their sender, who is answered.
		{"-request address", "", "News-Request@lists.example.org", "poster@p.test", "poster@p.test"},
		{"owner- address, null sender", "", "owner-news@lists.example.org", "", ""},
		{"alias without owner", "", "help@example.org", "poster@p.test", "MAILER-DAEMON@fanmail.test"},
		{"alias without owner, bounce_address set", "postmaster@example.org", "help@example.org", "poster@p.test", "postmaster@example.org"},
		{"alias without owner, null sender", "", "help@example.org", "", ""},
		{"alias with owner-NAME", "", "staff@example.org", "poster@p.test", "boss@x.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := withBounce(tt.bounce)
			ctx := context.Background()
			rcpt, err := x.Lookup(ctx, tt.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			m, err := x.Expand(ctx, Post{ID: "Q1", Received: time.Now(), Sender: tt.sender, Lists: []string{rcpt},
				Body: envelope.Bytes("Subject: x\r\n\r\nbody\r\n")})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range m.Message.Parts {
				for _, e := range p.Envelopes {
					got = append(got, e.Sender)
				}
			}
			if diff := cmp.Diff([]string{tt.want}, got); diff != "" {
				t.Errorf("envelope senders (-want +got):\n%s", diff)
			}
		})
	}
}
