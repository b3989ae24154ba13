package render

import (
	"path/filepath"
	"strings"
	"testing"

	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/lists"
	"fanmail/unsubscribe"
)

// BenchmarkRender makes one list's copy of a 4 KiB post: the work the
// expander does once per post and list, whatever the list's size.
//
//	go test -run '^$' -bench Render ./render/
func BenchmarkRender(b *testing.B) {
	msg := plainPost + strings.Repeat("A line of the post's body, as long as most are.\r\n", 80)
	p := splitPost(msg)
	s := lists.DefaultSettings()
	s.SubjectPrefix, s.Footer = "[announce]", footer
	for _, tt := range []struct {
		name string
		algs []dkim.Algorithm
	}{{"unsigned", nil}, {"rsa", []dkim.Algorithm{dkim.RSA}}, {"ed25519", []dkim.Algorithm{dkim.Ed25519}}} {
		b.Run(tt.name, func(b *testing.B) {
			var kr *dkim.Keyring
			if tt.algs != nil {
				dir := b.TempDir()
				for _, a := range tt.algs {
					if _, err := dkim.Generate(dir, dkim.GenerateOptions{Domain: "lists.example.org", Selector: string(a), Algorithm: a}); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				if kr, err = dkim.LoadKeyring(dir, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(p, List{Address: testList, Settings: s},
					Options{Hostname: "fanmail.test", DMARC: dmarc.PolicyNone, Keys: kr}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMember makes one member's share of a personalized copy: the
// work delivery does per member with personalize=verp (the VERP sender)
// and full (and the one-click link, and the member's DKIM signature).
//
//	go test -run '^$' -bench Member ./render/
func BenchmarkMember(b *testing.B) {
	p := splitPost(plainPost + strings.Repeat("A line of the post's body, as long as most are.\r\n", 80))
	unsub, err := unsubscribe.Open(filepath.Join(b.TempDir(), "keys"))
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		mode lists.Personalize
		alg  dkim.Algorithm
	}{{"verp", lists.PersonalizeVERP, ""}, {"full/unsigned", lists.PersonalizeFull, ""},
		{"full/rsa", lists.PersonalizeFull, dkim.RSA}, {"full/ed25519", lists.PersonalizeFull, dkim.Ed25519}} {
		b.Run(tt.name, func(b *testing.B) {
			var kr *dkim.Keyring
			if tt.alg != "" {
				dir := b.TempDir()
				if _, err := dkim.Generate(dir, dkim.GenerateOptions{Domain: "lists.example.org", Selector: "s", Algorithm: tt.alg}); err != nil {
					b.Fatal(err)
				}
				if kr, err = dkim.LoadKeyring(dir, nil); err != nil {
					b.Fatal(err)
				}
			}
			s := lists.DefaultSettings()
			s.Personalize = tt.mode
			c, err := Render(p, List{Address: testList, Settings: s}, Options{Hostname: "fanmail.test", Keys: kr})
			if err != nil {
				b.Fatal(err)
			}
			ms := &Members{Keys: kr, Unsubscribe: unsub, BaseURL: "https://lists.example.org"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ms.Member(c.Personal, "announce-bounces@lists.example.org", "member@example.com"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
