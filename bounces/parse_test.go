package bounces

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/dsn"
	"fanmail/envelope"
)

// TestParseOwnDSN reads the DSNs fanmail itself writes (package dsn),
// as another fanmail's list would receive them.
func TestParseOwnDSN(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	msg, err := dsn.Compose(dsn.Report{
		ReportingMTA: "mx.example.net",
		To:           "dev-bounces@lists.example.org",
		ArrivalDate:  at,
		Date:         at,
		MessageID:    "dsn-1@mx.example.net",
		Header:       []byte("From: dave@example.net\r\nTo: dev@lists.example.org\r\nSubject: hi\r\n"),
		Recipients: []dsn.Recipient{
			{FinalRecipient: "ann@example.com", OriginalRecipient: "ann@example.com", Action: dsn.Failed,
				Reply: envelope.Reply{Enhanced: "5.1.1", Host: "mx.example.com", Code: 550, Text: "No such user"}, LastAttempt: at},
			{FinalRecipient: "bob@example.org", Action: dsn.Delayed,
				Reply: envelope.Reply{Enhanced: "4.4.1", Text: "connection timed out"}, WillRetryUntil: at.Add(120 * time.Hour)},
			{FinalRecipient: "jörg@exämple.net", Action: dsn.Failed, Reply: envelope.Reply{Enhanced: "5.2.2", Code: 552, Text: "Mailbox full"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Parse(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rep.Recipients {
		checkRecipient(t, rep.Recipients[i])
		rep.Recipients[i].Evidence = ""
	}
	want := Report{
		Format:       RFC3464,
		ReportingMTA: "mx.example.net",
		Recipients: []Recipient{
			{Address: "ann@example.com", Action: dsn.Failed, Status: "5.1.1", Severity: Hard,
				Diagnostic: "550 5.1.1 No such user", RemoteMTA: "mx.example.com"},
			// The DSN part has no Diagnostic-Code for a local failure;
			// the text part's paragraph about the address fills it in.
			{Address: "bob@example.org", Action: dsn.Delayed, Status: "4.4.1", Severity: Soft,
				Diagnostic: "delayed: connection timed out Delivery will be retried until Sat, 07 Mar 2026 09:00:00 +0000."},
			{Address: "jörg@exämple.net", Action: dsn.Failed, Status: "5.2.2", Severity: Soft,
				Diagnostic: "552 5.2.2 Mailbox full"},
		},
	}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
