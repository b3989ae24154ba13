package delivery

import (
	"strings"
	"testing"

	"fanmail/envelope"
)

// A message received with SMTPUTF8 needs it on the wire only when its
// sender or header is not ASCII; one that does not goes to any server,
// without the parameter.
func TestSMTPUTF8OnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	const (
		asciiHead = "From: j@list.test\r\nSubject: plain\r\n\r\nÄpfel und Birnen\r\n"
		utf8Head  = "From: Jörg <j@list.test>\r\nSubject: Grüße\r\n\r\nhi\r\n"
		longHead  = "X-Long: "
	)
	long := longHead + strings.Repeat("a", 9000) + "\r\nSubject: ö\r\n\r\nhi\r\n"
	tests := []struct {
		name     string
		ext      []string
		flag     bool
		body     string
		want     brief
		wantMail string // the MAIL command's parameters after FROM:<...>
	}{
		{"ASCII header with the flag, server without SMTPUTF8", []string{"8BITMIME"}, true, asciiHead, sent, " BODY=8BITMIME"},
		{"UTF-8 header with the flag, server with SMTPUTF8", []string{"8BITMIME", "SMTPUTF8"}, true, utf8Head, sent, " BODY=8BITMIME SMTPUTF8"},
		{"UTF-8 header with the flag, server without", []string{"8BITMIME"}, true, utf8Head, brief{envelope.Failed, 0, "5.6.7"}, ""},
		{"UTF-8 after a long header line", []string{"8BITMIME"}, true, long, brief{envelope.Failed, 0, "5.6.7"}, ""},
		{"UTF-8 header without the flag", []string{"8BITMIME"}, false, utf8Head, sent, " BODY=8BITMIME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := request("example.test", "a")
			env.SMTPUTF8 = tt.flag
			setBody(&env, tt.body)
			res, cmds := deliverScripted(t, tt.ext, env)
			checkBriefs(t, []brief{tt.want}, res)
			var mail string
			for _, c := range cmds {
				if strings.HasPrefix(c, "MAIL FROM:") {
					_, mail, _ = strings.Cut(c, ">")
				}
			}
			if mail != tt.wantMail {
				t.Errorf("MAIL parameters %q, want %q (commands %q)", mail, tt.wantMail, cmds)
			}
		})
	}
}
