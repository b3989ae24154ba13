package bounces

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/dsn"
)

func TestEncodeVERP(t *testing.T) {
	for _, tc := range []struct {
		list, member, want string
	}{
		{"dev@lists.example.org", "ann@example.com", "dev-bounces+ann=example.com@lists.example.org"},
		{"Dev@Lists.Example.ORG", "Ann@Example.COM", "Dev-bounces+Ann=example.com@lists.example.org"},
		{"dev@lists.example.org", "a=b@example.com", "dev-bounces+a=b=example.com@lists.example.org"},
		{"dev@lists.example.org", "ann+tag@example.com", "dev-bounces+ann+tag=example.com@lists.example.org"},
		{"dev@lists.example.org", `"ann smith"@example.com`, `"dev-bounces+ann smith=example.com"@lists.example.org`},
		{"dev@lists.example.org", "jörg@exämple.net", "dev-bounces+jörg=exämple.net@lists.example.org"},
		{"dev@lists.example.org", "ann@[192.0.2.1]", `"dev-bounces+ann=[192.0.2.1]"@lists.example.org`},
		{"a-bounces@lists.example.org", "ann@example.com", "a-bounces-bounces+ann=example.com@lists.example.org"},
	} {
		got, err := EncodeVERP(tc.list, tc.member)
		if err != nil {
			t.Errorf("EncodeVERP(%q, %q): %v", tc.list, tc.member, err)
			continue
		}
		if got != tc.want {
			t.Errorf("EncodeVERP(%q, %q) = %q, want %q", tc.list, tc.member, got, tc.want)
		}
	}
}

func TestEncodeVERPRefuses(t *testing.T) {
	for _, tc := range []struct {
		list, member string
		is           error // nil: any error
	}{
		{"dev@lists.example.org", "a-very-long-member-local-part-that-goes-on-and-on@example.com", ErrVERPTooLong},
		{"x-bounces+y@lists.example.org", "ann@example.com", errBouncesInList},
		{"X-BOUNCES+y@lists.example.org", "ann@example.com", errBouncesInList},
		{"not a list", "ann@example.com", nil},
		{"dev@lists.example.org", "no-at-sign", nil},
	} {
		_, err := EncodeVERP(tc.list, tc.member)
		if err == nil || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("EncodeVERP(%q, %q) = %v, want %v", tc.list, tc.member, err, tc.is)
		}
	}
}

func TestParseBounceAddress(t *testing.T) {
	for _, tc := range []struct {
		rcpt, list, member string
	}{
		{"dev-bounces@lists.example.org", "dev@lists.example.org", ""},
		{"<dev-bounces@lists.example.org>", "dev@lists.example.org", ""},
		{"DEV-BOUNCES@LISTS.EXAMPLE.ORG", "DEV@lists.example.org", ""},
		{"dev-bounces+ann=example.com@lists.example.org", "dev@lists.example.org", "ann@example.com"},
		{"dev-BOUNCES+ann=EXAMPLE.com@Lists.Example.Org", "dev@lists.example.org", "ann@example.com"},
		{"dev-bounces+a=b=example.com@lists.example.org", "dev@lists.example.org", "a=b@example.com"},
		{"dev-bounces+ann+tag=example.com@lists.example.org", "dev@lists.example.org", "ann+tag@example.com"},
		{"dev-bounces+ann-bounces+x=example.com@lists.example.org", "dev@lists.example.org", "ann-bounces+x@example.com"},
		{`"dev-bounces+ann smith=example.com"@lists.example.org`, "dev@lists.example.org", `"ann smith"@example.com`},
		{"a-bounces-bounces+ann=example.com@lists.example.org", "a-bounces@lists.example.org", "ann@example.com"},
	} {
		list, member, err := ParseBounceAddress(tc.rcpt)
		if err != nil || list != tc.list || member != tc.member {
			t.Errorf("ParseBounceAddress(%q) = %q, %q, %v; want %q, %q", tc.rcpt, list, member, err, tc.list, tc.member)
		}
	}
}

func TestParseBounceAddressRejects(t *testing.T) {
	for _, tc := range []struct {
		rcpt string
		is   error
	}{
		{"dev@lists.example.org", ErrNotBounceAddress},
		{"-bounces@lists.example.org", ErrNotBounceAddress},
		{"dev-bouncesx@lists.example.org", ErrNotBounceAddress},
		{"not an address", ErrNotBounceAddress},
		{"-bounces+ann=example.com@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+ann@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+=example.com@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+ann=@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+ann=exa_mple.com@lists.example.org", ErrMalformedVERP},
		{"dev-bounces+ann=example..com@lists.example.org", ErrNotBounceAddress}, // not an address at all
	} {
		list, member, err := ParseBounceAddress(tc.rcpt)
		if !errors.Is(err, tc.is) {
			t.Errorf("ParseBounceAddress(%q) = %q, %q, %v; want %v", tc.rcpt, list, member, err, tc.is)
		}
	}
}

func TestVERPRoundTrip(t *testing.T) {
	for _, member := range []string{"ann@example.com", "a=b@example.com", "a+b=c@example.net", "=x@example.org",
		"x=@example.org", `"a b"@example.com`, `"a=b@c"@example.com`, "Ann.Smith@Example.COM", "ann@[IPv6:2001:db8::1]"} {
		enc, err := EncodeVERP("dev@lists.example.org", member)
		if err != nil {
			t.Errorf("EncodeVERP(%q): %v", member, err)
			continue
		}
		list, got, err := ParseBounceAddress(enc)
		want, _ := normalize(member)
		if err != nil || list != "dev@lists.example.org" || got != want {
			t.Errorf("%q → %q → %q, %q, %v", member, enc, list, got, err)
		}
	}
}

func TestBounceAddress(t *testing.T) {
	got, err := BounceAddress("Dev@Lists.Example.org")
	if err != nil || got != "Dev-bounces@lists.example.org" {
		t.Errorf("BounceAddress = %q, %v", got, err)
	}
	if _, err := BounceAddress("nope"); err == nil {
		t.Error("BounceAddress accepted a malformed list")
	}
}

func examineFile(t *testing.T, rcpt, name string) Evidence {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ev, err := Examine(rcpt, f)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// brief is what the Examine tests compare: who, failed or delayed,
// hard or soft.
type brief struct {
	Address, Final string
	Action         dsn.Action
	Status         string
	Severity       Severity
}

func briefs(rs []Recipient) []brief {
	var bs []brief
	for _, r := range rs {
		bs = append(bs, brief{r.Address, r.FinalRecipient, r.Action, r.Status, r.Severity})
	}
	return bs
}

func TestExamine(t *testing.T) {
	const plain = "dev-bounces@lists.example.org"
	verp := func(member string) string {
		s, err := EncodeVERP("dev@lists.example.org", member)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name, rcpt, sample string
		want               []brief
	}{
		{"plain address: every failure the report names", plain, "03-postfix-dsn.eml", []brief{
			{"erin@example.com", "", dsn.Failed, "5.1.1", Hard},
			{"frank@example.net", "", dsn.Failed, "5.7.1", Soft},
		}},
		{"VERP: the member's own entry", verp("frank@example.net"), "03-postfix-dsn.eml", []brief{
			{"frank@example.net", "", dsn.Failed, "5.7.1", Soft},
		}},
		{"VERP: member forwarded elsewhere, the worst failure", verp("kim.old@example.org"), "06-exim-failed.eml", []brief{
			{"kim.old@example.org", "kim@example.com", dsn.Failed, "5.1.1", Hard},
		}},
		{"VERP: matched through the final recipient", verp("sam@mail.example.net"), "11-sendmail-text.eml", []brief{
			{"sam@mail.example.net", "", dsn.Failed, "5.2.1", Hard},
		}},
		{"VERP: an address only the text names (file delivery)", verp("mia@example.net"), "07-exim-quota.eml", []brief{
			{"mia@example.net", "", dsn.Failed, "5.0.0", Soft},
		}},
		{"VERP: a delay stays a delay", verp("jack@example.com"), "05-postfix-delay.eml", []brief{
			{"jack@example.com", "", dsn.Delayed, "4.4.1", Soft},
		}},
		{"VERP: vacation reply gives nothing", verp("fay@example.com"), "22-autoreply-vacation.eml", nil},
		{"VERP: challenge gives nothing", verp("hugo@example.net"), "23-challenge-response.eml", nil},
		{"VERP: a person's message gives nothing", verp("ida@example.com"), "24-not-bounce.eml", nil},
		{"VERP: a success report gives nothing", verp("leo@example.com"), "25-rfc3464-relayed.eml", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := examineFile(t, tc.rcpt, tc.sample)
			if ev.List != "dev@lists.example.org" {
				t.Errorf("list %q", ev.List)
			}
			if diff := cmp.Diff(tc.want, briefs(ev.Members)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, m := range ev.Members {
				checkRecipient(t, m)
			}
		})
	}
}

// TestExamineUnreadable covers Mailman's VERP rule: a report nothing
// can be read from still counts against the VERP member, unless it
// calls itself a delay warning.
func TestExamineUnreadable(t *testing.T) {
	rcpt := "dev-bounces+ann=example.com@lists.example.org"
	for _, tc := range []struct {
		name, msg string
		want      []brief
	}{
		{"unknown MTA failure", "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undeliverable mail\r\n\r\nSomething went wrong.\r\n",
			[]brief{{"ann@example.com", "", dsn.Failed, "5.0.0", Hard}}},
		{"unknown MTA warning", "From: postmaster@mx.example.net\r\nSubject: Delivery delayed\r\n\r\nStill trying.\r\n",
			[]brief{{"ann@example.com", "", dsn.Delayed, "4.0.0", Soft}}},
		{"not a report", "From: ann@example.com\r\nSubject: hello\r\n\r\nhi\r\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Examine(rcpt, strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, briefs(ev.Members)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Examine("dev@lists.example.org", strings.NewReader("")); !errors.Is(err, ErrNotBounceAddress) {
		t.Errorf("Examine on a list address: %v", err)
	}
}
