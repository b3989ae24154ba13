package expander

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fanmail/envelope"
	"fanmail/internal/testutil"
)

func aliasFixture(t *testing.T, content string) *Expander {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "aliases")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	store := testutil.ListStore(t, dir, "news@lists.example.org", "ann@example.net", "m1@y.test", "a@x.test")
	a, err := LoadAliases(AliasConfig{Files: []string{file}, LocalDomains: []string{"example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	return New(store, "fanmail.test", nil).WithAliases(a)
}

func TestExpandAliasParts(t *testing.T) {
	t.Parallel()
	x := aliasFixture(t, `staff: a@x.test, news@lists.example.org, "|/bin/true", /tmp/archive, staff
owner-staff: boss@x.test
`)
	ctx := context.Background()
	rcpt, err := x.Lookup(ctx, "Staff@Example.ORG")
	if err != nil || rcpt != "staff@example.org" {
		t.Fatalf("Lookup = %q, %v", rcpt, err)
	}
	m, err := x.Expand(ctx, Post{ID: "Q1", Received: time.Now(), Sender: "poster@p.test", Lists: []string{rcpt},
		Body: envelope.Bytes("Subject: x\r\n\r\nbody\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{} // sender → recipients
	for _, p := range m.Message.Parts {
		for _, e := range p.Envelopes {
			if e.IsLocal() && len(e.Recipients) != 1 {
				t.Errorf("local envelope with %d targets, want one each", len(e.Recipients))
			}
			got[e.Sender] = append(got[e.Sender], e.Recipients...)
		}
	}
	// a@x.test is reached twice (directly and through the list) and goes
	// out once; staff's self-reference is a local mailbox, which fanmail
	// does not have, so it is dropped rather than sent back to itself.
	want := map[string][]string{
		"boss@x.test":                    {"a@x.test", "|/bin/true", "/tmp/archive"},
		"news-bounces@lists.example.org": {"m1@y.test"},
	}
	for sender, rcpts := range want {
		if len(got[sender]) != len(rcpts) {
			t.Errorf("sender %s: %v, want %v", sender, got[sender], rcpts)
		}
	}
	if len(got) != len(want) {
		t.Errorf("parts by sender %v, want %v", got, want)
	}
}

func TestAliasOfOnlyLocalMailboxes(t *testing.T) {
	t.Parallel()
	x := aliasFixture(t, "me: me\n")
	_, err := x.Expand(context.Background(), Post{ID: "Q1", Received: time.Now(), Lists: []string{"me@example.org"},
		Body: envelope.Bytes("Subject: x\r\n\r\n")})
	if !errors.Is(err, ErrNoTargets) {
		t.Errorf("Expand = %v, want ErrNoTargets", err)
	}
}
