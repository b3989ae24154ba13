package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
)

// TestBigPostsInBoundedMemory sends many big posts at once to the real
// binary: each session spools its post to disk beyond a small part in
// memory, the expander reads only the header and the journal copies the
// body in chunks, so the server's peak RSS stays within 256 MB of what
// it was before the posts, and every post reaches the sink intact.
//
// The default is 50 posts of 20 MB against a bound of 256 MB. Under the
// race detector, which slows this test process (client and sink) but
// not the server binary, it is 6 posts against 64 MB: held in memory
// they would take 120 MB. FANMAIL_BIG_POSTS=N and FANMAIL_BIG_POST_MB=M
// change the load (M under the default max_message_size of 25 MB).
func TestBigPostsInBoundedMemory(t *testing.T) {
	t.Parallel()
	defPosts, maxGrowth := 50, int64(256<<20)
	if raceEnabled {
		defPosts, maxGrowth = 6, 64<<20
	}
	posts, sizeMB := envInt("FANMAIL_BIG_POSTS", defPosts), envInt("FANMAIL_BIG_POST_MB", 20)
	var mu sync.Mutex
	sums := map[string][32]byte{} // X-Post number → checksum of the post as the sink got it
	n := newFakeNet(t, []string{"d00.test"}, func(string) fakenet.SinkOptions {
		// Five 20 MB transfers at once share two busy cores with the rest
		// of the suite: a read may wait longer than the default minute.
		return fakenet.SinkOptions{DiscardBodies: true, Timeout: 5 * time.Minute, DataHook: func(d fakenet.Delivery) error {
			i := bytes.Index(d.Data, []byte("X-Post: "))
			if i < 0 {
				return &smtp.SMTPError{Code: 554, Message: "no X-Post header"}
			}
			num, _, _ := bytes.Cut(d.Data[i+len("X-Post: "):], []byte("\r\n"))
			sum := sha256.Sum256(d.Data[i:])
			mu.Lock()
			sums[string(num)] = sum
			mu.Unlock()
			return nil
		}}
	})
	// Every post comes from 127.0.0.1 at once: the per-client session
	// cap (under [load]) must let them all in. A transfer that times out
	// under load is retried in seconds, not at the default first retry
	// minutes later.
	cfg := n.writeConfig(t, filepath.Join(t.TempDir(), "data"),
		fmt.Sprintf("max_sessions_per_client = %d\n[queue]\nretry_min = \"1s\"\nretry_max = \"2s\"\n", posts+1))
	p := serveList(t, cfg, "big@d00.test")
	base := peakRSS(t, p.cmd.Process.Pid)

	want := make([][32]byte, posts)
	var wg sync.WaitGroup
	for i := range posts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := postBig(p.addr, i, int64(sizeMB)<<20)
			if err != nil {
				t.Errorf("post %d: %v", i, err)
			}
			want[i] = sum
		}()
	}
	wg.Wait()
	n.waitDelivered(t, posts, 5*time.Minute, p)
	peak := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("%d posts of %d MB: peak RSS %d MB, %d MB before the posts", posts, sizeMB, peak>>20, base>>20)
	if growth := int64(peak - base); growth > maxGrowth {
		t.Errorf("peak RSS grew by %d MB during the posts, want at most %d MB", growth>>20, maxGrowth>>20)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, sum := range want {
		if got, ok := sums[strconv.Itoa(i)]; !ok || got != sum {
			t.Errorf("post %d: delivered %v, checksum matches %v", i, ok, got == sum)
		}
	}
	p.stop(t)
}

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			return v
		}
	}
	return def
}

// postBig sends a post of about size bytes of generated 76-character
// lines, never holding it whole, and returns the checksum of the post
// as written. It speaks SMTP through net/textproto and writes DATA as
// is: no line starts with a dot, so there is nothing to stuff, and the
// test's own CPU goes to the server.
func postBig(addr string, num int, size int64) ([32]byte, error) {
	var sum [32]byte
	conn, err := textproto.Dial("tcp", addr)
	if err != nil {
		return sum, err
	}
	defer conn.Close()
	if _, _, err := conn.ReadResponse(220); err != nil {
		return sum, err
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{{"EHLO poster.example.org", 250}, {"MAIL FROM:<poster@example.org>", 250}, {"RCPT TO:<" + e2eList + ">", 250}, {"DATA", 354}} {
		if _, err := conn.Cmd("%s", step.cmd); err != nil {
			return sum, err
		}
		if _, msg, err := conn.ReadResponse(step.code); err != nil {
			return sum, fmt.Errorf("%s: %v %s", step.cmd, err, msg)
		}
	}
	h := sha256.New()
	w := io.MultiWriter(conn.W, h)
	fmt.Fprintf(w, "X-Post: %d\r\nFrom: poster@example.org\r\nTo: %s\r\nSubject: big post %d\r\nMessage-ID: <big-%d@example.org>\r\n\r\n",
		num, e2eList, num, num)
	// 1,000 random lines of 68 characters, each sent many times behind a
	// running line number, so every line differs and making them costs
	// little.
	r := rand.New(rand.NewPCG(uint64(num), 2))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"
	block := make([]byte, 1000*68)
	for i := range block {
		block[i] = alphabet[r.IntN(len(alphabet))]
	}
	line := make([]byte, 0, 78)
	for k, written := 0, int64(0); written < size; k++ {
		line = fmt.Appendf(line[:0], "%08d", k)
		j := k % 1000
		line = append(append(line, block[j*68:j*68+68]...), '\r', '\n')
		w.Write(line)
		written += int64(len(line))
	}
	conn.W.WriteString(".\r\n")
	if err := conn.W.Flush(); err != nil {
		return sum, err
	}
	if _, msg, err := conn.ReadResponse(250); err != nil {
		return sum, fmt.Errorf("end of DATA: %v %s", err, msg)
	}
	copy(sum[:], h.Sum(nil))
	conn.Cmd("QUIT")
	return sum, nil
}
