package listaddr

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tok := "abcdefghijklmnopqrstuvwxyz234567"
	tests := []struct {
		addr string
		want []Address
	}{
		{"announce@lists.example.org", []Address{{List: "announce@lists.example.org"}}},
		{"owner-announce@lists.example.org", []Address{
			{List: "owner-announce@lists.example.org"},
			{List: "announce@lists.example.org", Role: Owner}}},
		{"Announce-Request@lists.example.org", []Address{
			{List: "Announce-Request@lists.example.org"},
			{List: "Announce@lists.example.org", Role: Request}}},
		{"announce-approve+" + tok + "@lists.example.org", []Address{
			{List: "announce-approve+" + tok + "@lists.example.org"},
			{List: "announce@lists.example.org", Role: Approve, Token: tok}}},
		{"announce-REJECT+" + tok + "@lists.example.org", []Address{
			{List: "announce-REJECT+" + tok + "@lists.example.org"},
			{List: "announce@lists.example.org", Role: Reject, Token: tok}}},
		// Both forms at once: every reading, the post first.
		{"owner-x-request@d.example", []Address{
			{List: "owner-x-request@d.example"},
			{List: "x-request@d.example", Role: Owner},
			{List: "owner-x@d.example", Role: Request}}},
		// Not roles: nothing before the suffix, no token, a token where
		// none belongs.
		{"owner-@d.example", []Address{{List: "owner-@d.example"}}},
		{"-request@d.example", []Address{{List: "-request@d.example"}}},
		{"announce-approve@d.example", []Address{{List: "announce-approve@d.example"}}},
		{"announce-approve+@d.example", []Address{{List: "announce-approve+@d.example"}}},
		{"announce-request+x@d.example", []Address{{List: "announce-request+x@d.example"}}},
		{"announce-owner@lists.example.org", []Address{
			{List: "announce-owner@lists.example.org"},
			{List: "announce@lists.example.org", Role: Owner}}},
		{"announce-bounces@lists.example.org", []Address{
			{List: "announce-bounces@lists.example.org"},
			{List: "announce@lists.example.org", Role: Bounces}}},
		{"announce-bounces+bob=example.com@lists.example.org", []Address{
			{List: "announce-bounces+bob=example.com@lists.example.org"},
			{List: "announce@lists.example.org", Role: Bounces, Token: "bob=example.com"}}},
		{"announce-confirm+" + tok + "@lists.example.org", []Address{
			{List: "announce-confirm+" + tok + "@lists.example.org"},
			{List: "announce@lists.example.org", Role: Confirm, Token: tok}}},
		{"announce-subscribe@lists.example.org", []Address{
			{List: "announce-subscribe@lists.example.org"},
			{List: "announce@lists.example.org", Role: Subscribe}}},
		{"Announce-UNSUBSCRIBE@lists.example.org", []Address{
			{List: "Announce-UNSUBSCRIBE@lists.example.org"},
			{List: "Announce@lists.example.org", Role: Unsubscribe}}},
		{"announce-confirm@d.example", []Address{{List: "announce-confirm@d.example"}}},
		{"announce-bounces+@d.example", []Address{{List: "announce-bounces+@d.example"}}},
		{"announce-subscribe+x@d.example", []Address{{List: "announce-subscribe+x@d.example"}}},
		{"nodomain", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Parse(tt.addr)); diff != "" {
			t.Errorf("Parse(%s) (-want +got):\n%s", tt.addr, diff)
		}
	}
}

// TestOfParse: every address Of writes, Parse reads back.
func TestOfParse(t *testing.T) {
	const list = "announce@lists.example.org"
	for _, r := range []Role{Post, Owner, Request, Approve, Reject, Bounces, Confirm, Subscribe, Unsubscribe} {
		tok := ""
		if r == Approve || r == Reject || r == Confirm {
			tok = "t0k3n"
		}
		addr := Of(list, r, tok)
		found := false
		for _, a := range Parse(addr) {
			if a == (Address{List: list, Role: r, Token: tok}) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: Of wrote %s, which Parse does not read back", r, addr)
		}
	}
	for r, want := range map[Role]string{
		Owner: "owner-announce@lists.example.org", Request: "announce-request@lists.example.org",
		Approve: "announce-approve+T@lists.example.org", Reject: "announce-reject+T@lists.example.org",
		Bounces: "announce-bounces+T@lists.example.org", Confirm: "announce-confirm+T@lists.example.org",
		Subscribe: "announce-subscribe@lists.example.org", Unsubscribe: "announce-unsubscribe@lists.example.org",
	} {
		if got := Of(list, r, "T"); got != want {
			t.Errorf("Of(%s) = %s, want %s", r, got, want)
		}
	}
	if got := Of(list, Bounces, ""); got != "announce-bounces@lists.example.org" {
		t.Errorf("Of(bounces, no token) = %s", got)
	}
	if got := ListID(list); got != "announce.lists.example.org" {
		t.Errorf("ListID = %s", got)
	}
}
