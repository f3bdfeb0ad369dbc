// Command ferretdb is a tiny wrapper around the embeddable FerretDB v1 package with its
// SQLite backend: a MongoDB-wire server with no Docker, no PostgreSQL and no cgo.
//
// bookify.infra.ferretdb builds it with
//
//	GOFLAGS=-mod=mod go build -tags ferretdb_no_postgresql -modfile=<cache>/patched/go.mod -o <cache>/ferretdb .
//
// (this go.mod plus a replace of FerretDB by a copy with two one-line fixes that let lookups
// by _id use the _id index: SQLITE_ID_PATCHES there). It then waits for the first stdout
// line, the MongoDB URI, which is printed only once the TCP listener is bound (ferretdb.New listens synchronously). A wrapper module is used
// instead of `go install .../cmd/ferretdb@v1.24.2`, whose binary panics on start-up
// (FerretDB issue #2982: build/version/version.txt is not in the module zip).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP listen address (port 0 picks a free port)")
	dir := flag.String("dir", "", "SQLite data directory (must exist); empty keeps data in memory")
	// FerretDB logs every failed command at WARN, including the endSessions each PyMongo
	// client sends on close (sessions are unsupported in v1), so ERROR keeps logs useful.
	logLevel := flag.String("log-level", "error", "debug, info, warn or error")
	// FerretDB opens SQLite in WAL mode. synchronous=normal fsyncs the WAL at checkpoints
	// instead of at every commit: a commit survives a crash of this process (kill -9), and
	// only an OS crash or power loss may roll back the last ones. "full" syncs every commit.
	synchronous := flag.String("synchronous", "normal", "SQLite synchronous pragma: normal or full")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		log.Fatalf("-log-level: %v", err)
	}

	if *synchronous != "normal" && *synchronous != "full" {
		log.Fatalf("-synchronous: %q is neither normal nor full", *synchronous)
	}
	sqliteURL := "file:./?mode=memory"
	if *dir != "" {
		sqliteURL = "file:" + *dir + "/?_pragma=synchronous(" + *synchronous + ")"
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		log.Fatal(err)
	}

	// SIGINT/SIGTERM cancel the context; Run then closes the listener and returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// Readiness line for the launcher: the URI, alone on the first stdout line.
	fmt.Println(f.MongoDBURI())

	if err := <-done; err != nil {
		log.Fatal(err)
	}
}
