package aliases

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// writeBig writes an aliases file of n entries (uI: personI@dI.example,
// with 1 in 10 a two-target list) plus "all: :include:all.list", an
// include of m names, each an alias of the file.
func writeBig(tb testing.TB, n, m int) string {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name string, fill func(w *bufio.Writer)) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		w := bufio.NewWriter(f)
		fill(w)
		if err := w.Flush(); err != nil {
			tb.Fatal(err)
		}
		f.Close()
		return p
	}
	write("all.list", func(w *bufio.Writer) {
		for i := 0; i < m; i++ {
			fmt.Fprintf(w, "u%d\n", i)
		}
	})
	return write("aliases", func(w *bufio.Writer) {
		fmt.Fprintln(w, "# generated")
		fmt.Fprintln(w, "all: :include:all.list")
		for i := 0; i < n-1; i++ {
			if i%10 == 0 {
				fmt.Fprintf(w, "u%d: person%d@d%d.example,\n\tu%d\n", i, i, i%100, i+1)
				continue
			}
			fmt.Fprintf(w, "u%d: person%d@d%d.example\n", i, i, i%100)
		}
	})
}

// BenchmarkLoad: a 100,000-entry aliases file.
func BenchmarkLoad(b *testing.B) {
	path := writeBig(b, 100_000, 0)
	b.ResetTimer()
	for b.Loop() {
		t, probs := Load(LoadOptions{}, path)
		if t.Len() != 100_000 || len(probs) != 0 {
			b.Fatalf("%d entries, %v", t.Len(), probs)
		}
	}
}

// BenchmarkExpand: "all", an :include: of m names, each an alias; the
// m=25k and m=50k figures together show the cost is linear.
func BenchmarkExpand(b *testing.B) {
	for _, m := range []int{25_000, 50_000} {
		b.Run(fmt.Sprintf("include=%d", m), func(b *testing.B) {
			t, _ := Load(LoadOptions{}, writeBig(b, 100_000, m))
			x := &Expander{Table: t, LocalDomains: []string{"example.org"}}
			b.ResetTimer()
			for b.Loop() {
				res, err := x.Expand(context.Background(), "all")
				if err != nil || len(res.Targets) != m {
					b.Fatalf("%d targets, %v, %v", len(res.Targets), err, res.Failures)
				}
			}
		})
	}
}
