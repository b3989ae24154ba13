package delivery

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"fanmail/envelope"
)

func TestErrorAs(t *testing.T) {
	t.Parallel()
	cause := &tlsError{io.ErrUnexpectedEOF}
	err := fmt.Errorf("deliver: %w", localError(false, "4.7.5", "STARTTLS", "127.0.0.1:25", cause, "TLS handshake failed"))
	var de *Error
	if !errors.As(err, &de) || de.Permanent || de.Enhanced != "4.7.5" || de.Command != "STARTTLS" {
		t.Fatalf("errors.As = %+v", de)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("cause not reachable with errors.Is")
	}
	var te *tlsError
	if !errors.As(err, &te) {
		t.Error("tlsError not reachable with errors.As")
	}
	r := replyError("RCPT TO", 550, "5.1.1 no such user", "127.0.0.1:25")
	if !r.Permanent || r.Code != 550 || r.Enhanced != "5.1.1" || r.Line != "no such user" || r.status() != envelope.Failed {
		t.Errorf("replyError = %+v", r)
	}
	if got, want := r.Error(), "RCPT TO: 550 5.1.1 no such user"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
