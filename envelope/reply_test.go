package envelope

import "testing"

func TestSplitEnhanced(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][2]string{
		"2.0.0 OK: queued":  {"2.0.0", "OK: queued"},
		"5.1.1 no":          {"5.1.1", "no"},
		"4.7.500 busy":      {"4.7.500", "busy"},
		"no code here":      {"", "no code here"},
		"1.2.3 wrong class": {"", "1.2.3 wrong class"},
		"2.0 short":         {"", "2.0 short"},
		"":                  {"", ""},
	} {
		enh, text := splitEnhanced(in)
		if enh != want[0] || text != want[1] {
			t.Errorf("splitEnhanced(%q) = %q, %q; want %q, %q", in, enh, text, want[0], want[1])
		}
	}
}

func TestParseReplyMultiline(t *testing.T) {
	t.Parallel()
	r := ParseReply("550 5.7.1 The user or domain that you are sending to\n5.7.1 does not accept mail\nfrom you")
	if r.Code != 550 || r.Enhanced != "5.7.1" || r.Text != "The user or domain that you are sending to does not accept mail from you" {
		t.Errorf("ParseReply = %+v", r)
	}
}

// TestReplyRoundTrip: what the queue records with String, ParseReply
// reads back, whatever parts a reply lacks.
func TestReplyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r    Reply
		text string
	}{
		{Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}, "550 5.1.1 no such user"},
		{Reply{Code: 451, Text: "try later"}, "451 try later"},
		{Reply{Enhanced: "4.4.1", Text: "connect: refused"}, "4.4.1 connect: refused"},
		{Reply{Text: "internal error"}, "internal error"},
		{Reply{Enhanced: "5.4.7", Text: "queue lifetime expired; last reply: 451 4.3.0 try later"},
			"5.4.7 queue lifetime expired; last reply: 451 4.3.0 try later"},
	} {
		if got := tt.r.String(); got != tt.text {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.text)
		}
		if got := ParseReply(tt.text); got != tt.r {
			t.Errorf("ParseReply(%q) = %+v, want %+v", tt.text, got, tt.r)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"2.0.0 OK", "5.1.1 a\n5.1.1 b", "", "4.", "9.9.9 x", "5.1.1", "\n\n", "5.1.1 x\nnot coded",
		"250 2.0.0 OK", "550 5.1.1 a\n5.1.1 b", "421 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := ParseReply(s)
		if r.Enhanced != "" {
			if e, _ := splitEnhanced(r.Enhanced + " x"); e != r.Enhanced {
				t.Errorf("enhanced code %q from %q does not parse again", r.Enhanced, s)
			}
		}
		// A server's reply, as the queue records it, keeps its codes.
		if r.Code != 0 {
			if back := ParseReply(r.String()); back.Code != r.Code || back.Enhanced != r.Enhanced {
				t.Errorf("%q recorded as %q reads back as %+v", s, r.String(), back)
			}
		}
	})
}
