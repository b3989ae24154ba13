package bounces

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"fanmail/dsn"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status, diag string
		want         Severity
	}{
		// The table, code by code.
		{"5.1.1", "", Hard},
		{"5.1.2", "", Hard},
		{"5.1.3", "", Hard},
		{"5.1.6", "", Hard},
		{"5.1.10", "", Hard}, // RFC 7505 null MX
		{"5.1.7", "", Soft},  // the sender's address
		{"5.1.8", "", Soft},
		{"5.2.1", "", Hard},
		{"5.2.2", "", Soft},
		{"5.2.3", "", Soft},
		{"5.2.4", "", Soft},
		{"5.3.4", "", Soft},
		{"5.4.4", "", Hard},
		{"5.4.7", "", Soft},
		{"5.4.6", "", Soft},
		{"5.6.0", "", Soft},
		{"5.7.1", "", Soft},
		{"5.7.13", "", Hard},
		{"5.7.17", "", Hard},
		{"5.7.26", "", Soft},
		{"2.0.0", "", Soft},
		// Transient failures are never hard, whatever the text says.
		{"4.1.1", "450 4.1.1 <a@example.org>: Recipient address rejected: User unknown", Soft},
		{"4.2.2", "mailbox full", Soft},
		// Generic codes: a specific code or the words in the text decide.
		{"5.0.0", "", Hard}, // when in doubt, hard
		{"5.0.0", "550 #5.1.0 Address rejected.", Hard},
		{"5.0.0", "552 5.2.2 Mailbox full", Soft},
		{"5.0.0", "550 Unknown user a@example.org", Hard},
		{"5.0.0", "554 rejected: listed on a blocklist", Soft},
		{"5.0.0", "Host not found, try again", Soft},
		{"5.5.0", "", Soft},
		{"5.5.0", "550 Unknown user a@example.org . (#5.5.0)", Hard},
		{"5.2.0", "550 5.2.0 account is disabled", Hard},
		{"5.2.0", "550 5.2.0 rejected as spam", Soft},
		{"5.7.0", "550 5.7.0 Please use the smtp server of your ISP", Soft},
		// No or a malformed status: the reply code or the text decides.
		{"", "550 No such user", Hard},
		{"", "452 Too many recipients", Soft},
		{"", "Sorry, no mailbox here by that name. (#5.1.1)", Hard},
		{"", "Unrouteable address", Hard},
		{"", "retry timeout exceeded", Soft},
		{"nonsense", "550 5.1.1 user unknown", Hard},
		{"", "", Hard},
	} {
		if got := Classify(tc.status, tc.diag); got != tc.want {
			t.Errorf("Classify(%q, %q) = %s, want %s", tc.status, tc.diag, got, tc.want)
		}
	}
}

func TestFromReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rcpt      string
		permanent bool
		code      int
		enh, text string
		want      Recipient
	}{
		{"5xx user unknown", "<Ann@Example.COM>", true, 550, "5.1.1", "<ann@example.com>: Recipient address rejected: User unknown",
			Recipient{Address: "Ann@example.com", Action: dsn.Failed, Status: "5.1.1", Severity: Hard,
				Diagnostic: "550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown"}},
		{"5xx policy", "bob@example.org", true, 554, "5.7.1", "Message rejected as spam",
			Recipient{Address: "bob@example.org", Action: dsn.Failed, Status: "5.7.1", Severity: Soft,
				Diagnostic: "554 5.7.1 Message rejected as spam"}},
		{"5xx without enhanced code", "carl@example.org", true, 550, "", "no such user here",
			Recipient{Address: "carl@example.org", Action: dsn.Failed, Status: "5.0.0", Severity: Hard,
				Diagnostic: "550 no such user here"}},
		{"4xx is a delay", "dana@example.org", false, 452, "4.2.2", "Mailbox full",
			Recipient{Address: "dana@example.org", Action: dsn.Delayed, Status: "4.2.2", Severity: Soft,
				Diagnostic: "452 4.2.2 Mailbox full"}},
		{"local permanent failure", "erin@example.org", true, 0, "5.1.10", "domain example.org has a null MX",
			Recipient{Address: "erin@example.org", Action: dsn.Failed, Status: "5.1.10", Severity: Hard,
				Diagnostic: "domain example.org has a null MX"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromReply(tc.rcpt, tc.permanent, tc.code, tc.enh, tc.text, "mx.example.com")
			if err != nil {
				t.Fatal(err)
			}
			tc.want.RemoteMTA, tc.want.Evidence = "mx.example.com", tc.want.Diagnostic
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := FromReply("not an address", true, 550, "5.1.1", "x", ""); err == nil {
		t.Error("FromReply accepted a malformed address")
	}
}
