package bounces

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkParse measures parsing throughput: over all golden samples
// (all), per family, and on a report carrying a 900 KiB attachment
// (large: the base64 original is decoded by nobody, only skipped).
func BenchmarkParse(b *testing.B) {
	var all [][]byte
	byFamily := map[string][][]byte{}
	for _, eml := range samples(b) {
		data, err := os.ReadFile(eml)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, data)
		family := strings.SplitN(strings.TrimSuffix(filepath.Base(eml), ".eml"), "-", 3)[1]
		byFamily[family] = append(byFamily[family], data)
	}
	run := func(name string, msgs [][]byte) {
		b.Run(name, func(b *testing.B) {
			n := 0
			for _, m := range msgs {
				n += len(m)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, m := range msgs {
					if _, err := Parse(bytes.NewReader(m)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msgs/s")
		})
	}
	run("all", all)
	for _, f := range []string{"rfc3464", "postfix", "exim", "sendmail", "qmail", "gmail", "exchange"} {
		run(f, byFamily[f])
	}
	large := append([]byte(dsnWith(2)[:len(dsnWith(2))-len("--B--\r\n")]),
		"--B\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"...)
	large = append(large, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, 900<<10))...)
	large = append(large, "\r\n--B--\r\n"...)
	run("large", [][]byte{large})
}

// BenchmarkRecord measures one scoring step.
func BenchmarkRecord(b *testing.B) {
	p := DefaultPolicy()
	var s State
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for i := 0; i < b.N; i++ {
		s, _ = p.Record(s, hard, at.Add(time.Duration(i%5)*day))
		if !s.Disabled.IsZero() {
			s = State{}
		}
	}
}
