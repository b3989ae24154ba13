package render

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/dmarc"
	"fanmail/lists"
)

const testList = "announce@lists.example.org"

var received = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// splitPost returns a Post over msg, its header taken as the expander
// takes it: through the empty line.
func splitPost(msg string) Post {
	hdr := msg
	if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
		hdr = msg[:i+4]
	}
	return Post{Header: []byte(hdr), Body: strings.NewReader(msg), Size: int64(len(msg)),
		QueueID: "0QID0000000000000", Received: received}
}

func render(t *testing.T, msg string, s lists.Settings, policy dmarc.Policy) (*Copy, string) {
	t.Helper()
	p := splitPost(msg)
	c, err := Render(p, List{Address: testList, Settings: s}, Options{Hostname: "fanmail.test", DMARC: policy,
		Boundary: func() string { return "BOUNDARY" }})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, c.Reader(p.Body, p.Size)); err != nil {
		t.Fatal(err)
	}
	if int64(out.Len()) != c.Size(p.Size) {
		t.Errorf("Size = %d, copy is %d bytes", c.Size(p.Size), out.Len())
	}
	return c, out.String()
}

// listFields are the fields every copy of announce gets, in order.
const listFields = "List-Id: <announce.lists.example.org>\r\n" +
	"List-Post: <mailto:announce@lists.example.org>\r\n" +
	"List-Help: <mailto:announce-request@lists.example.org?subject=help>\r\n" +
	"List-Subscribe: <mailto:announce-request@lists.example.org?subject=subscribe>\r\n" +
	"List-Unsubscribe: <mailto:announce-request@lists.example.org?subject=unsubscribe>\r\n"

const plainPost = "From: Poster Name <poster@example.net>\r\n" +
	"To: announce@lists.example.org\r\n" +
	"Subject: hello\r\n" +
	"Date: Wed, 01 Jul 2026 11:59:00 +0000\r\n" +
	"Message-ID: <p1@example.net>\r\n" +
	"\r\n" +
	"Body line one.\r\n" +
	"Body line two.\r\n"

func TestRenderHeader(t *testing.T) {
	t.Parallel()
	def := lists.DefaultSettings()
	prefixed := def
	prefixed.SubjectPrefix = "[announce]"
	archived := def
	archived.ArchiveURL = "https://lists.example.org/announce/"
	tests := []struct {
		name     string
		settings lists.Settings
		in, want string
	}{
		{"list fields on top, the rest byte for byte", def, plainPost,
			listFields + "Precedence: list\r\n" + plainPost},
		{"Date and Message-ID added when missing", def,
			"From: p@example.net\r\nSubject: x\r\n\r\nbody\r\n",
			listFields + "Precedence: list\r\n" +
				"Message-ID: <0QID0000000000000@fanmail.test>\r\n" +
				"Date: Wed, 01 Jul 2026 12:00:00 +0000\r\n" +
				"From: p@example.net\r\nSubject: x\r\n\r\nbody\r\n"},
		{"the poster's list fields are replaced, not duplicated", def,
			"List-Id: Other <other.example.net>\r\nFrom: p@example.net\r\nList-Post: <mailto:x@example.net>\r\n" +
				"Precedence: bulk\r\nList-Unsubscribe: <https://evil.example/>\r\nList-Owner: <mailto:x@example.net>\r\n" +
				"Date: Wed, 01 Jul 2026 11:59:00 +0000\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n",
			listFields + "Precedence: list\r\n" +
				"From: p@example.net\r\nDate: Wed, 01 Jul 2026 11:59:00 +0000\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n"},
		{"List-Archive when archive_url is set", archived, plainPost,
			listFields + "List-Archive: <https://lists.example.org/announce/>\r\nPrecedence: list\r\n" + plainPost},
		{"subject prefix", prefixed, plainPost,
			listFields + "Precedence: list\r\n" + "Subject: [announce] hello\r\n" +
				strings.Replace(plainPost, "Subject: hello\r\n", "", 1)},
		{"subject prefix never doubled on replies", prefixed,
			strings.Replace(plainPost, "Subject: hello", "Subject: Re: [ANNOUNCE] hello", 1),
			listFields + "Precedence: list\r\n" + strings.Replace(plainPost, "Subject: hello", "Subject: Re: [ANNOUNCE] hello", 1)},
		{"subject prefix seen through an encoded word", prefixed,
			strings.Replace(plainPost, "Subject: hello", "Subject: =?utf-8?q?Re=3A_=5Bannounce=5D_caf=C3=A9?=", 1),
			listFields + "Precedence: list\r\n" + strings.Replace(plainPost, "Subject: hello", "Subject: =?utf-8?q?Re=3A_=5Bannounce=5D_caf=C3=A9?=", 1)},
		{"subject prefix before an encoded word, which is kept", prefixed,
			strings.Replace(plainPost, "Subject: hello", "Subject: =?utf-8?q?caf=C3=A9?=", 1),
			listFields + "Precedence: list\r\n" + "Subject: [announce] =?utf-8?q?caf=C3=A9?=\r\n" +
				strings.Replace(plainPost, "Subject: hello\r\n", "", 1)},
		{"subject prefix on a post without a subject", prefixed,
			"From: p@example.net\r\nDate: Wed, 01 Jul 2026 11:59:00 +0000\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n",
			listFields + "Precedence: list\r\n" + "Subject: [announce]\r\n" +
				"From: p@example.net\r\nDate: Wed, 01 Jul 2026 11:59:00 +0000\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, got := render(t, tt.in, tt.settings, dmarc.PolicyNone)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("copy (-want +got):\n%s", diff)
			}
			if c.Lead != nil || c.Insert != nil || c.Munged || c.Wrapped || c.Footer {
				t.Errorf("body changed: %+v", c)
			}
		})
	}
}

func TestNonASCIIPrefix(t *testing.T) {
	t.Parallel()
	s := lists.DefaultSettings()
	s.SubjectPrefix = "[café]"
	for _, subj := range []string{"hello", "=?utf-8?q?caf=C3=A9?="} {
		_, got := render(t, strings.Replace(plainPost, "Subject: hello", "Subject: "+subj, 1), s, dmarc.PolicyNone)
		info, err := inspect([]byte(got))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"hello": "[café] hello", "=?utf-8?q?caf=C3=A9?=": "[café] café"}[subj]
		if info.Subject != want {
			t.Errorf("subject %q decodes to %q after the prefix, want %q", subj, info.Subject, want)
		}
	}
}

func TestBadHeader(t *testing.T) {
	t.Parallel()
	p := splitPost("From: p@example.net\r\nno colon here\r\n\r\nbody\r\n")
	_, err := Render(p, List{Address: testList, Settings: lists.DefaultSettings()}, Options{Hostname: "h"})
	if !errors.Is(err, ErrBadHeader) {
		t.Errorf("err = %v, want ErrBadHeader", err)
	}
	if _, err := inspect(p.Header); !errors.Is(err, ErrBadHeader) {
		t.Errorf("Parse err = %v, want ErrBadHeader", err)
	}
}

func TestFixupFields(t *testing.T) {
	t.Parallel()
	p := splitPost("From: p@example.net\r\n\r\nbody\r\n")
	want := "Date: Wed, 01 Jul 2026 12:00:00 +0000\r\nMessage-ID: <0QID0000000000000@fanmail.test>\r\n"
	if got := string(FixupFields(p.Header, p, "fanmail.test")); got != want {
		t.Errorf("FixupFields = %q, want %q", got, want)
	}
	p = splitPost(plainPost)
	if got := FixupFields(p.Header, p, "fanmail.test"); got != nil {
		t.Errorf("FixupFields of a complete header = %q, want none", got)
	}
}

func TestParseInfo(t *testing.T) {
	t.Parallel()
	info, err := inspect([]byte("From: =?utf-8?q?J=C3=BCrgen?= <J@Example.NET>, other@example.org\r\n" +
		"Subject: =?utf-8?q?caf=C3=A9?=\r\nList-Id: Some list <some.example.org>\r\nList-Id: <two.example.org>\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Info{From: "J@Example.NET", FromName: "Jürgen", Subject: "café", ListIDs: []string{"some.example.org", "two.example.org"}}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseMessageID(t *testing.T) {
	t.Parallel()
	tests := []struct{ header, want string }{
		{"Subject: x\r\nMessage-ID: <a@b>\r\n\r\n", "<a@b>"},
		{"message-id:   <lower@case>  \r\n\r\n", "<lower@case>"},
		{"Message-Id:\r\n <folded@x>\r\nSubject: y\r\n\r\n", "<folded@x>"},
		{"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n", "<first@x>"},
		{"Subject: no id\n\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		info, err := inspect([]byte(tt.header))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.header, err)
		}
		if info.MessageID != tt.want {
			t.Errorf("Parse(%q).Info.MessageID = %q, want %q", tt.header, info.MessageID, tt.want)
		}
	}
}

// inspect is what Parse tells of a header.
func inspect(raw []byte) (Info, error) {
	p, err := Parse(raw)
	if err != nil {
		return Info{}, err
	}
	return p.Info, nil
}
