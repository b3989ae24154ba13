package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// TestAppendFieldAsGoMessage holds appendField to what go-message writes
// for the same field, the list fields being made as bytes for speed:
// short and long values, with and without white space to fold at.
func TestAppendFieldAsGoMessage(t *testing.T) {
	t.Parallel()
	values := []string{
		"list",
		"<mailto:announce-request@lists.example.org?subject=unsubscribe>",
		"<https://lists.example.org/" + strings.Repeat("a", 70) + ">",
		"<https://lists.example.org/" + strings.Repeat("b", 990) + ">",
		"<https://lists.example.org/" + strings.Repeat("c", 1000) + ">",
		"a value with spaces that is long enough to be folded by go-message somewhere after column seventy-six",
	}
	for _, v := range values {
		var h textproto.Header
		h.Add("List-Archive", v)
		var want bytes.Buffer
		if err := textproto.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		field := strings.TrimSuffix(want.String(), "\r\n") // the empty line that ends a header
		if got := appendField(nil, "List-Archive", v); string(got) != field {
			t.Errorf("appendField(%.40q...) = %q, want %q", v, got, field)
		}
	}
}
