package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"

	"fanmail/address"
	"fanmail/lists"
	"fanmail/unsubscribe"
)

// oneClickKey and oneClickValue are the body RFC 8058 §3.1 has the mail
// provider POST: List-Unsubscribe=One-Click.
const (
	oneClickKey   = "List-Unsubscribe"
	oneClickValue = "One-Click"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	link := unsubscribe.PathPrefix + "{token}"
	mux.HandleFunc("GET "+link, s.page) // and HEAD
	mux.HandleFunc("POST "+link, s.unsubscribe)
	mux.HandleFunc(link, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD, POST")
		text(w, http.StatusMethodNotAllowed, "Method not allowed: POST List-Unsubscribe=One-Click to this link, or GET it for a page with a button.")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusNotFound, "Not found: this server answers only one-click unsubscribe links, "+unsubscribe.PathPrefix+"TOKEN.")
	})
	return s.guard(mux)
}

// guard rate-limits each client before anything else is done, and sets
// the headers every answer carries: the token is in the URL, so no
// answer is cached and no page sends it on as a referrer.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		if !s.limiter.allow(s.client(r)) {
			h.Set("Retry-After", "1")
			text(w, http.StatusTooManyRequests, "Too many requests from your address; try again in a moment.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// text answers code with a line of plain text.
func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

const badLink = "This unsubscribe link is not valid: it is incomplete or altered, or older than the keys this server keeps. " +
	"Use the unsubscribe link of a recent message from the list, or write to the list's owner."

// verify checks the link's token; if it is bad it answers 400 and logs
// why, and ok is false.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) (list, member string, ok bool) {
	list, member, err := s.keys.Verify(r.PathValue("token"))
	if err == nil {
		// The store would refuse an address that does not parse; a
		// token signed for one is as bad as a forged one.
		if _, err = address.Parse(list); err == nil {
			_, err = address.Parse(member)
		}
		if err != nil {
			err = fmt.Errorf("%w: it names an address that does not parse: %v", unsubscribe.ErrInvalid, err)
		}
	}
	if err != nil {
		s.log.Warn("unsubscribe: bad link", "remote", s.client(r).String(), "method", r.Method, "err", err)
		text(w, http.StatusBadRequest, badLink)
		return "", "", false
	}
	return list, member, true
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>Unsubscribe from {{.List}}</title>
</head>
<body>
<h1>Unsubscribe</h1>
<p>Stop mail from the list <strong>{{.List}}</strong> to <strong>{{.Member}}</strong>?</p>
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
<p>Nothing changes until you press the button.</p>
</body>
</html>
`))

// page answers a GET of the link with a page whose button POSTs the
// one-click body to the same URL. It changes nothing: link scanners and
// previews GET every link in a message.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	list, member, ok := s.verify(w, r)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := pageTmpl.Execute(w, struct{ List, Member string }{list, member}); err != nil {
		s.log.Warn("unsubscribe: writing the page", "remote", s.client(r).String(), "err", err)
	}
}

// unsubscribe is RFC 8058's one-click POST: the member named by the
// token is removed at once, without confirmation, login or redirect. A
// member already removed, or a list deleted since, gets 200 as well: the
// request is idempotent, and either way no more mail goes out.
func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	list, member, ok := s.verify(w, r)
	if !ok {
		return
	}
	if code, msg := s.oneClick(r); code != 0 {
		text(w, code, msg)
		return
	}
	remote := s.client(r).String()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StoreTimeout)
	defer cancel()
	n, err := s.store.RemoveMembers(ctx, list, []string{member})
	switch {
	case errors.Is(err, lists.ErrNoList):
		s.log.Info("unsubscribe: no such list", "list", list, "member", member, "remote", remote)
		text(w, http.StatusOK, fmt.Sprintf("The list %s no longer exists; %s gets no mail from it.", list, member))
	case err != nil:
		s.log.Error("unsubscribe failed", "list", list, "member", member, "remote", remote, "err", err)
		w.Header().Set("Retry-After", "60")
		text(w, http.StatusServiceUnavailable, "Unsubscribing failed for a moment on our side; please try again in a minute.")
	case n == 0:
		s.log.Info("unsubscribe: not a member", "list", list, "member", member, "remote", remote)
		text(w, http.StatusOK, fmt.Sprintf("%s is not subscribed to %s (already unsubscribed).", member, list))
	default:
		s.log.Info("unsubscribed", "list", list, "member", member, "remote", remote)
		text(w, http.StatusOK, fmt.Sprintf("%s is unsubscribed from %s.", member, list))
	}
}

// oneClick reads the POST's body, which RFC 8058 §3.1 wants to be
// List-Unsubscribe=One-Click as application/x-www-form-urlencoded or
// multipart/form-data. It returns 0 if it is, or the code and text of
// the answer. The query string does not count.
func (s *Server) oneClick(r *http.Request) (code int, msg string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		switch mt {
		case "application/x-www-form-urlencoded":
			err = r.ParseForm()
		case "multipart/form-data":
			err = r.ParseMultipartForm(s.cfg.MaxBodyBytes)
			if r.MultipartForm != nil {
				defer r.MultipartForm.RemoveAll()
			}
		default:
			err = errors.ErrUnsupported
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "The request body is over " + strconv.FormatInt(tooBig.Limit, 10) + " bytes; a one-click unsubscribe is List-Unsubscribe=One-Click."
	case errors.Is(err, errors.ErrUnsupported) || mt == "":
		return http.StatusUnsupportedMediaType, "Send List-Unsubscribe=One-Click as application/x-www-form-urlencoded or multipart/form-data (RFC 8058 section 3.1)."
	case err != nil:
		return http.StatusBadRequest, "The form in the request body cannot be read: " + err.Error()
	case r.PostForm.Get(oneClickKey) != oneClickValue:
		return http.StatusBadRequest, "The request body must be List-Unsubscribe=One-Click (RFC 8058 section 3.1); nothing was changed."
	}
	return 0, ""
}
