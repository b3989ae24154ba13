// Command fanmail-sink is an SMTP server that accepts every message and
// prints it, for trying fanmail out on one machine: point a domain's route
// at it and watch the list's copies arrive. It listens on loopback only
// unless told otherwise, and stores nothing.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"fanmail/internal/fakenet"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2526", "SMTP listen `ADDR`")
	quiet := flag.Bool("quiet", false, "print one line per message instead of the whole message")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	sink, err := fakenet.NewSink(fakenet.SinkOptions{
		Addr:          *listen,
		DiscardBodies: true,
		DataHook: func(d fakenet.Delivery) error {
			fmt.Printf("message from <%s> to %d recipient(s) %v, %d bytes\n", d.From, len(d.Recipients), d.Recipients, d.Size)
			if !*quiet {
				fmt.Printf("%s\n", d.Data)
			}
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fanmail-sink: %v\n", err)
		os.Exit(1)
	}
	log.Info("fanmail-sink listening", "addr", sink.Addr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	sink.Close()
	log.Info("fanmail-sink stopped", "messages", sink.Transactions(), "recipients", sink.RecipientsDelivered())
}
