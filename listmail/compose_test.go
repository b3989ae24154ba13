package listmail

import (
	"strings"
	"testing"
	"time"

	"fanmail/listaddr"
)

// TestComposeHeader: an answer comes from LIST-request named after the
// list, a notice from owner-LIST named "LIST owner"; Reply-To only when
// there is one to give.
func TestComposeHeader(t *testing.T) {
	t.Parallel()
	date := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		o         outgoing
		want      []string
		wantNever string
	}{
		{outgoing{list: "news@lists.example.org", from: listaddr.Request, to: "ann@example.org", subject: "Help for news@lists.example.org",
			auto: "auto-replied", text: "hello\n"},
			[]string{"From: \"news\" <news-request@lists.example.org>\r\n", "To: <ann@example.org>\r\n",
				"Subject: Help for news@lists.example.org\r\n", "Auto-Submitted: auto-replied\r\n",
				"List-Id: <news.lists.example.org>\r\n", "Message-Id: <q1@fanmail.test>\r\n",
				"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n", "Content-Type: text/plain; charset=utf-8\r\n"},
			"Reply-To:"},
		{outgoing{list: "news@lists.example.org", from: listaddr.Owner, to: "bob@example.org", subject: "Your subscription",
			replyTo: "news-confirm+abc@lists.example.org", auto: "auto-generated", text: "confirm\n"},
			[]string{"From: \"news owner\" <owner-news@lists.example.org>\r\n", "Reply-To: <news-confirm+abc@lists.example.org>\r\n",
				"Auto-Submitted: auto-generated\r\n"},
			""},
	} {
		msg, err := compose(tt.o, "q1@fanmail.test", date)
		if err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(string(msg), "\r\n\r\n")
		header += "\r\n"
		for _, w := range tt.want {
			if !strings.Contains(header, w) {
				t.Errorf("%s: header lacks %q:\n%s", tt.o.to, w, header)
			}
		}
		if tt.wantNever != "" && strings.Contains(header, tt.wantNever) {
			t.Errorf("%s: header has %q:\n%s", tt.o.to, tt.wantNever, header)
		}
	}
}
