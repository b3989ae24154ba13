package lists

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"fanmail/address"
)

// LineError is one bad line of a member file.
type LineError struct {
	Name string // file name as given; "-" is standard input
	Line int    // 1-based
	Text string // the address as written, comment removed
	Err  error  // why it was rejected, usually an *address.Error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %q: %v (fix the address or remove the line)", displayName(e.Name), e.Line, e.Text, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// ReadMemberFile reads one address per line from r: blank lines and
// comments ("#" at the start of a line, or after whitespace) are skipped,
// CRLF line ends are accepted. It returns the normalized addresses, in
// file order, duplicates included. If any line is bad it returns no
// addresses and an error joining one *LineError per bad line, so that the
// caller applies nothing. name is used in messages ("-" for stdin).
func ReadMemberFile(name string, r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	var addrs []string
	var errs []error
	for lineNo := 1; ; lineNo++ {
		line, readErr := br.ReadString('\n')
		if readErr != nil && readErr != io.EOF {
			return nil, fmt.Errorf("read %s: %w", displayName(name), readErr)
		}
		if text := strings.TrimSpace(stripComment(line)); text != "" {
			if n, err := address.Normalize(text); err != nil {
				errs = append(errs, &LineError{Name: name, Line: lineNo, Text: text, Err: err})
			} else if len(errs) == 0 {
				addrs = append(addrs, n)
			}
		}
		if readErr == io.EOF {
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return addrs, nil
}

// stripComment removes a comment: "#" at the start of the line or after
// whitespace, outside a quoted local part ("#" is a valid atext
// character, so "a#b@example.org" is an address, not a comment).
func stripComment(line string) string {
	inQuote, escaped := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '#' && !inQuote && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}
