package lists

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"fanmail/address"
)

func TestReadMemberFile(t *testing.T) {
	tests := []struct {
		name, file, in string
		want           []string
		wantErr        string // the whole message
	}{
		{
			name: "comments, blanks and CRLF",
			file: "members.txt",
			in: "# whole-line comment\r\n" +
				"bob@example.com\r\n" +
				"\r\n" +
				"   \t\n" +
				"  carol@Example.NET   # trailing comment\n" +
				"\t# indented comment\n" +
				"<dave@example.org>\n" +
				"erin@example.org", // no final newline
			want: []string{"bob@example.com", "carol@example.net", "dave@example.org", "erin@example.org"},
		},
		{
			name: "hash inside an address is not a comment",
			file: "members.txt",
			in:   "a#b@example.com\n\"x #y\"@example.com # real comment\n",
			want: []string{"a#b@example.com", `"x #y"@example.com`},
		},
		{
			name: "duplicates are kept for the store to skip",
			file: "members.txt",
			in:   "a@x.org\nA@X.ORG\na@x.org\n",
			want: []string{"a@x.org", "A@x.org", "a@x.org"},
		},
		{name: "empty file", file: "members.txt", in: "", want: nil},
		{name: "only comments", file: "members.txt", in: "# nobody yet\n\n", want: nil},
		{
			name: "every bad line reported",
			file: "members.txt",
			in: "ok@example.com\n" +
				"bob@@x\n" +
				"# fine\n" +
				"no-at-sign   # comment\n" +
				"also-ok@example.com\n" +
				"Bob Smith <bob@example.com>\r\n" +
				"a..b@example.com\n",
			wantErr: `members.txt:2: "bob@@x": more than one @ (quote the local part if it really contains @) (fix the address or remove the line)` + "\n" +
				`members.txt:4: "no-at-sign": missing @ (fix the address or remove the line)` + "\n" +
				`members.txt:6: "Bob Smith <bob@example.com>": text before < (give only the address inside <>) (fix the address or remove the line)` + "\n" +
				`members.txt:7: "a..b@example.com": consecutive dots in local part (fix the address or remove the line)`,
		},
		{
			name:    "stdin is named <stdin>",
			file:    "-",
			in:      "good@example.com\nbad@\n",
			wantErr: `<stdin>:2: "bad@": missing domain (fix the address or remove the line)`,
		},
		{
			name:    "control characters are quoted, not echoed",
			file:    "m.txt",
			in:      "a\x1bb@example.com\n",
			wantErr: `m.txt:1: "a\x1bb@example.com": control character U+001B in local part (fix the address or remove the line)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadMemberFile(tt.file, strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ReadMemberFile = %q, want error", got)
				}
				if diff := cmp.Diff(tt.wantErr, err.Error()); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				if got != nil {
					t.Errorf("ReadMemberFile returned %d addresses with an error", len(got))
				}
				var lerr *LineError
				var aerr *address.Error
				if !errors.As(err, &lerr) || !errors.As(err, &aerr) {
					t.Errorf("error does not unwrap to *LineError and *address.Error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadMemberFile: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ReadMemberFile (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadMemberFileReadError(t *testing.T) {
	_, err := ReadMemberFile("members.txt", iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || err.Error() != "read members.txt: disk on fire" {
		t.Errorf("ReadMemberFile error = %v", err)
	}
}
