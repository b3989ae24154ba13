package fakenet

import (
	"testing"

	"github.com/emersion/go-smtp"
)

func TestRcptReplies(t *testing.T) {
	full := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "full"}
	gone := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	r := RcptReplies{"g": full, "gone@": gone}
	for _, tt := range []struct {
		to   string
		want *smtp.SMTPError
	}{
		{"gone@x.test", gone}, // the longest key wins
		{"gx@x.test", full},
		{"ok@x.test", nil},
	} {
		err := r.Hook("from@x.test", tt.to)
		if tt.want == nil {
			if err != nil {
				t.Errorf("%s: %v, want accepted (a nil error)", tt.to, err)
			}
			continue
		}
		if err != tt.want {
			t.Errorf("%s: %v, want %v", tt.to, err, tt.want)
		}
	}
}
