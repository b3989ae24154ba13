package bounces

import (
	"bufio"
	"bytes"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"fanmail/dsn"
)

// Bounds on what Parse reads and returns, so that a hostile or broken
// message costs at most this much.
const (
	maxInput      = 1 << 20 // bytes of a message read; the rest is ignored
	maxParts      = 64      // MIME parts visited
	maxDepth      = 8       // multipart nesting
	maxRecipients = 500     // recipients returned
	maxDiagnostic = 1000    // bytes of one diagnostic
	maxEvidence   = 1024    // bytes of one evidence excerpt
	maxHostName   = 255     // bytes of a remote MTA name
)

// Format names the shape a report was recognised in.
type Format string

const (
	NotBounce    Format = ""             // an ordinary message: no evidence at all
	Unrecognized Format = "unrecognized" // looks like a bounce, but no recipient could be read
	RFC3464      Format = "rfc3464"      // multipart/report with message/(global-)delivery-status
	Postfix      Format = "postfix"      // Postfix's text notice without a DSN part
	Exim         Format = "exim"         // "This message was created automatically by mail delivery software."
	Sendmail     Format = "sendmail"     // "----- The following addresses had permanent fatal errors -----"
	Qmail        Format = "qmail"        // "Hi. This is the qmail-send program at ..."
	Gmail        Format = "gmail"        // "Your message wasn't delivered to ... because ..."
	Exchange     Format = "exchange"     // "Delivery has failed to these recipients or groups:"
	FailedHeader Format = "x-failed-recipients"
	AutoReply    Format = "autoreply" // RFC 3834 automatic response (vacation, out of office)
	Challenge    Format = "challenge" // a challenge-response system asking the sender to confirm
)

// Report is what a bounce message says.
type Report struct {
	Format       Format
	ReportingMTA string      // the host that wrote the report, if it says
	Recipients   []Recipient // failed and delayed recipients, at most maxRecipients
	Truncated    bool        // the message or the report was cut at a bound
}

// Recipient is one failed (or delayed) recipient of a report: the
// evidence about one address.
type Recipient struct {
	// Address is the normalized address the failure is about: the
	// Original-Recipient when the report gives one (the address the list
	// sent to, before any forwarding), else the final recipient.
	Address string `json:"address"`
	// FinalRecipient is the address the last MTA tried, when it differs.
	FinalRecipient string     `json:"final_recipient,omitempty"`
	Action         dsn.Action `json:"action"`   // dsn.Failed or dsn.Delayed
	Status         string     `json:"status"`   // RFC 3463 code, as reported or inferred
	Severity       Severity   `json:"severity"` // see Classify; a delay is always Soft
	Diagnostic     string     `json:"diagnostic,omitempty"`
	RemoteMTA      string     `json:"remote_mta,omitempty"`
	// Evidence is the excerpt of the report the recipient was read from,
	// at most maxEvidence bytes, for the list owner to see.
	Evidence string `json:"evidence,omitempty"`
}

// Parse reads a bounce and returns what it says about which recipients.
// It reads at most 1 MiB and never fails on malformed content: garbage
// gives an empty report. The only errors are r's own.
func Parse(r io.Reader) (Report, error) {
	res, err := parse(r)
	return res.Report, err
}

// result is Parse's full finding, with what Examine needs beyond the
// report.
type result struct {
	Report
	unnamed    []Recipient // failures whose address could not be read
	bounceLike bool        // the header looks like a mail system's report
	delayLike  bool        // the report presents itself as a delay warning
}

func parse(r io.Reader) (result, error) {
	buf, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return result{}, fmt.Errorf("read bounce: %w", err)
	}
	var res result
	if len(buf) > maxInput {
		buf, res.Truncated = buf[:maxInput], true
	}
	m := readMessage(buf)
	res.Truncated = res.Truncated || m.truncated
	res.bounceLike = m.bounceLike()
	res.delayLike = m.delayLike()

	var fromDSN []rawRecipient
	groups := 0
	for _, b := range m.dsn {
		mta, rs, n := parseDeliveryStatus(b)
		if res.ReportingMTA == "" {
			res.ReportingMTA = mta
		}
		fromDSN = append(fromDSN, rs...)
		groups += n
		if n >= maxGroups {
			res.Truncated = true
		}
	}
	format, fromText := detect(m)

	var named, unnamed []Recipient
	switch {
	case groups > 0 && countNamed(fromDSN) > 0, groups > 0 && len(fromText) == 0:
		res.Format = RFC3464
		named, unnamed = finishAll(fromDSN)
		// The text part may say more than the DSN (Exim's file
		// deliveries, a missing Diagnostic-Code).
		tnamed, _ := finishAll(fromText)
		named = fillFrom(named, tnamed)
	case format != NotBounce:
		res.Format = format
		named, unnamed = finishAll(fromText)
	case res.bounceLike && m.header.Get("X-Failed-Recipients") != "":
		res.Format = FailedHeader
		named, unnamed = finishAll(failedHeader(m.header.Get("X-Failed-Recipients")))
	case isChallenge(m):
		res.Format = Challenge
	case isAutoReply(m):
		res.Format = AutoReply
	case res.bounceLike:
		res.Format = Unrecognized
	}
	if len(named) > maxRecipients {
		named, res.Truncated = named[:maxRecipients], true
	}
	if len(unnamed) > maxRecipients {
		unnamed, res.Truncated = unnamed[:maxRecipients], true
	}
	res.Recipients, res.unnamed = named, unnamed
	res.ReportingMTA = hostName(firstNonEmpty(res.ReportingMTA, m.reportingMTA))
	return res, nil
}

// mail is a message taken apart: its header, its delivery-status parts
// and its readable text, without the returned original.
type mail struct {
	header    textproto.Header
	subject   string
	report    bool     // multipart/report at the top
	dsn       [][]byte // message/(global-)delivery-status bodies
	texts     []string // text/plain parts, in order
	htmls     []string // text/html parts, used when there is no text/plain
	parts     int
	truncated bool
	// reportingMTA is the reporting host a text notice names.
	reportingMTA string
	lines        []string // the text to scan, split into lines (see finishText)
	lower        []string // the same lines in lower case, for findLine
}

func readMessage(buf []byte) *mail {
	m := &mail{}
	rd := bytes.NewReader(buf)
	br := bufio.NewReader(rd)
	h, err := textproto.ReadHeader(br)
	body := buf[len(buf)-rd.Len()-br.Buffered():]
	if err != nil {
		// Not a message header: all we can do is read it as text.
		m.texts = append(m.texts, string(buf))
		m.finishText()
		return m
	}
	m.header = h
	mh := message.Header{Header: h}
	if s, err := mh.Text("Subject"); err == nil {
		m.subject = s
	} else {
		m.subject = h.Get("Subject")
	}
	// An unknown charset or transfer encoding still gives a readable
	// entity; the error only says the body was not converted.
	if e, _ := message.New(mh, br); e != nil {
		m.visit(e, 0)
	}
	if mt, _, _ := mh.ContentType(); strings.HasPrefix(mt, "multipart/") && m.parts == 0 {
		// MIME too broken to walk (a boundary that never comes, a
		// header folded without white space): read the raw body as
		// text rather than nothing. The detectors stop where the
		// returned message starts.
		m.texts = append(m.texts, string(body))
	}
	m.finishText()
	return m
}

// visit collects the parts of e that matter, depth first, within the
// bounds. Malformed MIME ends the walk; what was read so far is kept.
func (m *mail) visit(e *message.Entity, depth int) {
	mt, _, err := e.Header.ContentType()
	if err != nil || mt == "" {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth == 0 && mt == "multipart/report" {
			m.report = true
		}
		mr := e.MultipartReader()
		if mr == nil {
			return
		}
		if depth >= maxDepth {
			m.truncated = true
			return
		}
		for {
			if m.parts >= maxParts {
				m.truncated = true
				return
			}
			p, err := mr.NextPart()
			if p == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return
			}
			m.parts++
			m.visit(p, depth+1)
		}
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		m.dsn = append(m.dsn, readBody(e.Body))
	case "text/plain":
		m.texts = append(m.texts, string(readBody(e.Body)))
	case "text/html":
		m.htmls = append(m.htmls, string(readBody(e.Body)))
	}
	// Everything else is skipped, in particular message/rfc822 and
	// text/rfc822-headers: the returned original names recipients that
	// did not fail.
}

func readBody(r io.Reader) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, maxInput))
	return b
}

// finishText joins the readable parts into lines for the detectors.
func (m *mail) finishText() {
	texts := m.texts
	if len(texts) == 0 {
		for _, h := range m.htmls {
			texts = append(texts, stripHTML(h))
		}
	}
	var all strings.Builder
	for _, t := range texts {
		all.WriteString(t)
		all.WriteByte('\n')
	}
	s := strings.ToValidUTF8(all.String(), "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	m.lines = lines
	m.lower = make([]string, len(lines))
	for i, l := range lines {
		m.lower[i] = strings.ToLower(l)
	}
}

// stripHTML turns an HTML body into text: tags become line breaks (so
// that block elements stay apart) and entities are decoded.
func stripHTML(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		tag := strings.ToLower(s[i+1 : i+j])
		if strings.HasPrefix(tag, "br") || strings.HasPrefix(tag, "/p") || strings.HasPrefix(tag, "/div") ||
			strings.HasPrefix(tag, "/tr") || strings.HasPrefix(tag, "/h") || strings.HasPrefix(tag, "p") {
			b.WriteByte('\n')
		}
		s = s[i+j+1:]
	}
	return html.UnescapeString(b.String())
}
