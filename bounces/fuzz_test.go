package bounces

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics or errs on any input, that
// everything it returns is within its bounds and well formed, and that
// Examine, which parses the same way, holds up too. The seed corpus in
// testdata/fuzz/FuzzParse holds the golden samples and malformed MIME.
func FuzzParse(f *testing.F) {
	formats := map[Format]bool{NotBounce: true, Unrecognized: true, RFC3464: true, Postfix: true, Exim: true,
		Sendmail: true, Qmail: true, Gmail: true, Exchange: true, FailedHeader: true, AutoReply: true, Challenge: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		rep, err := Parse(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if !formats[rep.Format] {
			t.Fatalf("unknown format %q", rep.Format)
		}
		if len(rep.Recipients) > maxRecipients || len(rep.ReportingMTA) > maxHostName {
			t.Fatalf("%d recipients, reporting MTA of %d bytes", len(rep.Recipients), len(rep.ReportingMTA))
		}
		seen := map[string]bool{}
		for _, rc := range rep.Recipients {
			checkRecipient(t, rc)
			if seen[rc.Address] {
				t.Fatalf("%s reported twice", rc.Address)
			}
			seen[rc.Address] = true
		}
		ev, err := Examine("dev-bounces+ann=example.com@lists.example.org", bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("Examine: %v", err)
		}
		if len(ev.Members) > 1 || len(ev.Members) == 1 && ev.Members[0].Address != "ann@example.com" {
			t.Fatalf("VERP evidence about %+v", ev.Members)
		}
		for _, rc := range ev.Members {
			if rc.Evidence == "" && rc.Diagnostic == "" {
				t.Fatalf("VERP evidence without evidence: %+v", rc)
			}
		}
	})
}

// FuzzVERP checks that every address EncodeVERP writes is read back by
// ParseBounceAddress as the same list and member.
func FuzzVERP(f *testing.F) {
	for _, s := range [][2]string{
		{"dev@lists.example.org", "ann@example.com"},
		{"dev@lists.example.org", "a=b+c@example.com"},
		{"Dev@Lists.Example.org", `"a b=c"@example.net`},
		{"x-bounces@example.org", "y-bounces+z@example.org"},
		{"dev@lists.example.org", "jörg@exämple.net"},
		{"dev@lists.example.org", "ann@[192.0.2.1]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, member string) {
		enc, err := EncodeVERP(list, member)
		if err != nil {
			return
		}
		gotList, gotMember, err := ParseBounceAddress(enc)
		if err != nil {
			t.Fatalf("EncodeVERP(%q, %q) = %q, which does not parse: %v", list, member, enc, err)
		}
		wantList, _ := normalize(list)
		wantMember, _ := normalize(member)
		if !strings.EqualFold(gotList, wantList) || gotMember != wantMember {
			t.Fatalf("%q, %q → %q → %q, %q", list, member, enc, gotList, gotMember)
		}
	})
}
