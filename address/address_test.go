package address

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in     string
		want   Mailbox
		String string
	}{
		{"bob@example.org", Mailbox{"bob", "example.org"}, "bob@example.org"},
		{"  <Bob.Smith@Example.ORG>\t", Mailbox{"Bob.Smith", "example.org"}, "Bob.Smith@example.org"},
		{"<a@b>", Mailbox{"a", "b"}, "a@b"},
		{"a+tag@sub.example.co.uk", Mailbox{"a+tag", "sub.example.co.uk"}, "a+tag@sub.example.co.uk"},
		{"!#$%&'*+-/=?^_`{|}~@x.org", Mailbox{"!#$%&'*+-/=?^_`{|}~", "x.org"}, "!#$%&'*+-/=?^_`{|}~@x.org"},
		{"user@localhost", Mailbox{"user", "localhost"}, "user@localhost"},
		{"a@1-2.3com", Mailbox{"a", "1-2.3com"}, "a@1-2.3com"},
		{"a@xn--bcher-kva.example", Mailbox{"a", "xn--bcher-kva.example"}, "a@xn--bcher-kva.example"},

		// Quoted local parts keep their content; quotes come back only
		// when needed.
		{`"john doe"@example.org`, Mailbox{"john doe", "example.org"}, `"john doe"@example.org`},
		{`"plain"@example.org`, Mailbox{"plain", "example.org"}, `plain@example.org`},
		{`"a\"b\\c"@x.org`, Mailbox{`a"b\c`, "x.org"}, `"a\"b\\c"@x.org`},
		{`"\a"@x.org`, Mailbox{"a", "x.org"}, `a@x.org`},
		{`"a..b"@x.org`, Mailbox{"a..b", "x.org"}, `"a..b"@x.org`},
		{`".a"@x.org`, Mailbox{".a", "x.org"}, `".a"@x.org`},
		{`"a@b"@x.org`, Mailbox{"a@b", "x.org"}, `"a@b"@x.org`},

		// Address literals, canonicalized.
		{"a@[192.0.2.1]", Mailbox{"a", "[192.0.2.1]"}, "a@[192.0.2.1]"},
		{"a@[IPv6:2001:DB8:0:0:0:0:0:1]", Mailbox{"a", "[IPv6:2001:db8::1]"}, "a@[IPv6:2001:db8::1]"},
		{"a@[ipv6:::1]", Mailbox{"a", "[IPv6:::1]"}, "a@[IPv6:::1]"},
		{"a@[IPv6:::ffff:192.0.2.1]", Mailbox{"a", "[IPv6:::ffff:192.0.2.1]"}, "a@[IPv6:::ffff:192.0.2.1]"},

		// RFC 6531: UTF-8 is accepted as UTF-8.
		{"用户@例子.广告", Mailbox{"用户", "例子.广告"}, "用户@例子.广告"},
		{"Jörg@Bücher.DE", Mailbox{"Jörg", "bücher.de"}, "Jörg@bücher.de"},
		{`"ü ü"@x.org`, Mailbox{"ü ü", "x.org"}, `"ü ü"@x.org`},

		// Limits, exactly at the edge.
		{strings.Repeat("a", 64) + "@x.org", Mailbox{strings.Repeat("a", 64), "x.org"}, strings.Repeat("a", 64) + "@x.org"},
		{"a@" + strings.Repeat("b", 63) + ".org", Mailbox{"a", strings.Repeat("b", 63) + ".org"}, "a@" + strings.Repeat("b", 63) + ".org"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.String {
				t.Errorf("String() = %q, want %q", s, tt.String)
			}
			norm, err := Normalize(tt.in)
			if err != nil || norm != tt.String {
				t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, norm, err, tt.String)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := []struct {
		in, reason string
	}{
		{"", "empty address"},
		{"   ", "empty address"},
		{"<>", "empty address"},
		{"<a@b", "missing closing >"},
		{"a@b>", "missing opening <"},
		{"Bob Smith <bob@example.com>", "text before < (give only the address inside <>)"},
		{"bob", "missing @"},
		{"@example.org", "missing local part"},
		{"bob@", "missing domain"},
		{"bob@@x", "more than one @ (quote the local part if it really contains @)"},
		{"a@b@c", "more than one @ (quote the local part if it really contains @)"},
		{`"a"@b@c`, "more than one @ (quote the local part if it really contains @)"},
		{"john doe@x.org", "space in local part"},
		{"a@x .org", "space in domain"},
		{"a\x01b@x.org", "control character U+0001 in local part"},
		{"a\x7f@x.org", "control character U+007F in local part"},
		{"a@x\r\n.org", "control character U+000D in domain"},
		{"a(b)@x.org", `invalid character '(' in local part`},
		{"a,b@x.org", `invalid character ',' in local part`},
		{".a@x.org", "local part starts with a dot"},
		{"a.@x.org", "local part ends with a dot"},
		{"a..b@x.org", "consecutive dots in local part"},
		{"a\u200b@x.org", "invalid character U+200B in local part"},
		{"a\u00a0b@x.org", "invalid character U+00A0 in local part"},
		{"a\xff@x.org", "invalid UTF-8"},
		{`""@x.org`, "missing local part"},
		{`"abc@x.org`, "unterminated quoted local part"},
		{`"abc\`, "unterminated quoted local part"},
		{`"abc"`, "missing @"},
		{`"abc"d@x.org`, "text after the closing quote of the local part"},
		{"\"a\tb\"@x.org", "control character U+0009 in quoted local part"},
		{"\"a\\\tb\"@x.org", "backslash before control character U+0009 in quoted local part"},
		{strings.Repeat("a", 65) + "@x.org", "local part longer than 64 characters"},
		{`"` + strings.Repeat("a", 62) + ` "@x.org`, "local part longer than 64 characters"},
		{strings.Repeat("ü", 33) + "@x.org", "local part longer than 64 bytes"},
		{"a@.x.org", "domain starts with a dot"},
		{"a@x.org.", "domain ends with a dot"},
		{"a@x..org", "consecutive dots in domain"},
		{"a@-x.org", "domain label starts with a hyphen"},
		{"a@x-.org", "domain label ends with a hyphen"},
		{"a@x_y.org", `invalid character '_' in domain`},
		{"a@" + strings.Repeat("b", 64) + ".org", "domain label longer than 63 characters"},
		{strings.Repeat("a", 64) + "@" + strings.Repeat(long+".", 3) + long, "address longer than 254 characters"},
		{"a@" + strings.Repeat(long+".", 5) + "org", "domain longer than 255 characters"},
		{"a@x.€", "invalid character U+20AC in domain"},
		{"a@[192.0.2.1", "address literal missing closing ]"},
		{"a@[192.0.2.256]", "invalid IPv4 address literal"},
		{"a@[01.2.3.4]", "invalid IPv4 address literal"},
		{"a@[::1]", "IPv6 address literal without the IPv6: prefix"},
		{"a@[IPv6:1.2.3.4]", "invalid IPv6 address literal"},
		{"a@[IPv6:fe80::1%eth0]", "invalid IPv6 address literal"},
		{"a@[IPv6:::1::]", "invalid IPv6 address literal"},
		{"a@[x-tag:stuff]", `unsupported address literal tag "x-tag"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error %q", tt.in, m, tt.reason)
			}
			var aerr *Error
			if !errors.As(err, &aerr) {
				t.Fatalf("Parse(%q) error %T is not *Error", tt.in, err)
			}
			if diff := cmp.Diff(tt.reason, err.Error()); diff != "" {
				t.Errorf("Parse(%q) reason (-want +got):\n%s", tt.in, diff)
			}
			if _, nerr := Normalize(tt.in); nerr == nil {
				t.Errorf("Normalize(%q) succeeded, want error", tt.in)
			}
		})
	}
}

func TestStringQuotes(t *testing.T) {
	tests := []struct {
		m    Mailbox
		want string
	}{
		{Mailbox{"a.b", "x"}, "a.b@x"},
		{Mailbox{"", "x"}, `""@x`},
		{Mailbox{"a b", "x"}, `"a b"@x`},
		{Mailbox{`q"uo\te`, "x"}, `"q\"uo\\te"@x`},
		{Mailbox{"a.", "x"}, `"a."@x`},
		{Mailbox{"über", "x"}, "über@x"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives a round trip through String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"bob@example.org", `"john doe"@example.org`, "<a@[IPv6:::1]>", "用户@例子.广告",
		"a@[192.0.2.1]", `"a\"b"@x`, "bob@@x", ".a@b", "a@b..c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			var aerr *Error
			if !errors.As(err, &aerr) {
				t.Fatalf("Parse(%q) error %T is not *Error", s, err)
			}
			if strings.ContainsAny(aerr.Reason, "\r\n") {
				t.Fatalf("Parse(%q) reason %q contains a line break", s, aerr.Reason)
			}
			return
		}
		str := m.String()
		again, err := Parse(str)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, but Parse(String() = %q) fails: %v", s, m, str, err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip of %q through %q (-first +second):\n%s", s, str, diff)
		}
		if again.String() != str {
			t.Fatalf("String not stable: %q then %q", str, again.String())
		}
	})
}
