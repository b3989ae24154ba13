package dkim

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// post10KB returns the header and body of a 10 KB list post as delivery
// signs it: the author's header with its trace fields and the list's
// fields, and a plain-text body.
func post10KB() (header, body []byte) {
	var h bytes.Buffer
	for i := range 4 {
		fmt.Fprintf(&h, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n\tby lists.example.org (fanmail) with ESMTPS id 4F%dXYZ\r\n\tfor <announce@lists.example.org>; Wed, 01 Jul 2026 12:00:0%d +0000\r\n", i, i, i, i, i)
	}
	h.WriteString("From: Alice Example <alice@example.org>\r\n" +
		"To: announce@lists.example.org\r\n" +
		"Subject: [announce] Release notes for the summer,\r\n\tand what comes next\r\n" +
		"Date: Wed, 01 Jul 2026 12:00:00 +0000\r\n" +
		"Message-ID: <20260701120000.12345@example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"Reply-To: announce@lists.example.org\r\n" +
		"List-Id: Announcements <announce.lists.example.org>\r\n" +
		"List-Post: <mailto:announce@lists.example.org>\r\n" +
		"List-Help: <mailto:announce-request@lists.example.org?subject=help>\r\n" +
		"List-Subscribe: <mailto:announce-request@lists.example.org?subject=subscribe>\r\n" +
		"List-Unsubscribe: <https://lists.example.org/u/announce/bob%40example.net/3f9a2c>,\r\n <mailto:announce-request@lists.example.org?subject=unsubscribe>\r\n" +
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
		"List-Archive: <https://lists.example.org/announce/>\r\n")
	var b bytes.Buffer
	for b.Len() < 10<<10-h.Len() {
		b.WriteString(bigLine)
	}
	return h.Bytes(), b.Bytes()
}

// BenchmarkSign signs a 10 KB post's header with a precomputed body
// hash: the work delivery does per member.
func BenchmarkSign(b *testing.B) {
	kr := testKeyring(b)
	header, body := post10KB()
	bh, _ := HashBody(bytes.NewReader(body))
	for _, domain := range []string{rsaDomain, edDomain, dualDomain} {
		s := kr.For(domain)
		name := map[string]string{rsaDomain: "rsa2048", edDomain: "ed25519", dualDomain: "rsa2048+ed25519"}[domain]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(header, bh); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGoMsgauthSign is the per-copy cost without a precomputed
// body hash: go-msgauth's signer reading the whole 10 KB post.
func BenchmarkGoMsgauthSign(b *testing.B) {
	kr := testKeyring(b)
	header, body := post10KB()
	msg := append(append(append([]byte{}, header...), "\r\n"...), body...)
	for _, domain := range []string{rsaDomain, edDomain} {
		k := kr.For(domain).Keys()[0]
		b.Run(string(k.Algorithm), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				err := msgauth.Sign(io.Discard, bytes.NewReader(msg), &msgauth.SignOptions{
					Domain: k.Domain, Selector: k.Selector, Signer: k.signer,
					HeaderCanonicalization: msgauth.CanonicalizationRelaxed, BodyCanonicalization: msgauth.CanonicalizationRelaxed,
					HeaderKeys: signedFields[:],
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// proseLine is a line of an ordinary text body: single spaces, no
// trailing blanks, the common case.
const proseLine = "The list moved to the new server on Monday; replies go to the list as before.\r\n"

// BenchmarkBodyHash measures body-hash throughput (MB/s), once per post:
// ordinary text, and text whose every line has whitespace to rewrite.
func BenchmarkBodyHash(b *testing.B) {
	_, post := post10KB()
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"10KB-text", []byte(strings.Repeat(proseLine, (10<<10)/len(proseLine)))},
		{"10KB-messy", post},
		{"4MB-text", []byte(strings.Repeat(proseLine, (4<<20)/len(proseLine)))},
		{"4MB-messy", []byte(strings.Repeat(bigLine, (4<<20)/len(bigLine)))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				h := NewBodyHasher()
				h.Write(tc.body)
				h.Sum()
			}
		})
	}
}
