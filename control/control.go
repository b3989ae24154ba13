// Package control is the edge the queue tools (fanmail queue, show,
// flush, delete) reach a running server through: a small HTTP API over
// a unix socket in the data directory, so their answers are the live
// queue's. Only root and the server's own user get answers: the socket
// is 0600 from its creation and each caller's uid is checked
// (socket.go). It is a
// thin adapter beside the pipeline: the queue (package queuegroups) owns
// the state and the operations, cmd/fanmail wires the two together, and
// this package only carries requests and answers.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"fanmail/queuegroups"
)

// Spool is what the socket serves; *queuegroups.Queue is one.
type Spool interface {
	Summary(top, limit int) []queuegroups.DirSummary
	Show(id string) (queuegroups.MessageDetail, error)
	Flush(group, domain string) (int, error)
	Delete(id string) (int, error)
}

// StatusReporter is what a Spool also implements when the server has a
// status to show (fanmail status): any value that encodes as JSON.
type StatusReporter interface {
	Status() any
}

// Handler serves the queue tools' requests:
//
//	GET    /status               the Spool's Status(), if a StatusReporter
//	GET    /queue?top=N&limit=N  []queuegroups.DirSummary
//	GET    /queue/{id}           MessageDetail
//	POST   /flush?group=&domain= {"moved": N}
//	DELETE /queue/{id}           {"dropped": N}
func Handler(q Spool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		top, _ := strconv.Atoi(r.URL.Query().Get("top"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		writeJSON(w, http.StatusOK, q.Summary(top, limit))
	})
	mux.HandleFunc("GET /queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		md, err := q.Show(r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, md)
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		moved, err := q.Flush(r.URL.Query().Get("group"), r.URL.Query().Get("domain"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"moved": moved})
	})
	if sr, ok := q.(StatusReporter); ok {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, sr.Status())
		})
	}
	mux.HandleFunc("DELETE /queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		dropped, err := q.Delete(r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"dropped": dropped})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, queuegroups.ErrNoMessage) || errors.Is(err, queuegroups.ErrNoGroup) {
		code = http.StatusNotFound
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Serve listens on the unix socket at path (replacing a stale one: the
// caller holds the queue's directory locks, so no other server owns it)
// and serves Handler(q) to root and the server's user until ctx ends. A
// nil log discards.
func Serve(ctx context.Context, path string, q Spool, log *slog.Logger) error {
	uid := uint32(os.Geteuid())
	return serve(ctx, path, q, log, allowUID(uid), uid)
}

// serve is Serve with the callers allow admits, for tests.
func serve(ctx context.Context, path string, q Spool, log *slog.Logger, allow func(uint32) bool, serverUID uint32) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_ = os.Remove(path)
	ln, err := listenPrivate(path)
	if err != nil {
		return fmt.Errorf("queue admin socket %s: %w", path, err)
	}
	srv := &http.Server{Handler: requirePeer(Handler(q), allow, serverUID), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: withPeer}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("queue admin socket stopped", "err", err)
		}
	}()
	return nil
}

// Client calls a running server's Handler over its socket.
type Client struct {
	http *http.Client
}

// ErrNoServer means nothing answers on the admin socket.
var ErrNoServer = errors.New("no fanmail server is running on this data directory")

// Dial returns a client for the server whose socket is at path, or
// ErrNoServer when none answers there.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w (socket %s: %v)", ErrNoServer, path, err)
	}
	conn.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (c *Client) do(method, path string, query url.Values, out any) error {
	u := url.URL{Scheme: "http", Host: "fanmail", Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("queue admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("queue admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusNotFound {
				return errors.New(e.Error)
			}
			return fmt.Errorf("server: %s", e.Error)
		}
		return fmt.Errorf("queue admin %s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(body, out)
}

// Summary is Queue.Summary on the server.
func (c *Client) Summary(top, limit int) ([]queuegroups.DirSummary, error) {
	var out []queuegroups.DirSummary
	err := c.do("GET", "/queue", url.Values{"top": {strconv.Itoa(top)}, "limit": {strconv.Itoa(limit)}}, &out)
	return out, err
}

// Show is Queue.Show on the server.
func (c *Client) Show(id string) (queuegroups.MessageDetail, error) {
	var out queuegroups.MessageDetail
	err := c.do("GET", "/queue/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Flush is Queue.Flush on the server.
func (c *Client) Flush(group, domain string) (int, error) {
	var out map[string]int
	err := c.do("POST", "/flush", url.Values{"group": {group}, "domain": {domain}}, &out)
	return out["moved"], err
}

// Status decodes the server's status into out.
func (c *Client) Status(out any) error {
	return c.do("GET", "/status", nil, out)
}

// Delete is Queue.Delete on the server.
func (c *Client) Delete(id string) (int, error) {
	var out map[string]int
	err := c.do("DELETE", "/queue/"+url.PathEscape(id), nil, &out)
	return out["dropped"], err
}
