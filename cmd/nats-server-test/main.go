// Command nats-server-test runs a nats-server with JetStream from the
// github.com/nats-io/nats-server/v2 module jetflow already requires, so the
// fault-injection tests (test/chaos) can run the server as a process of its
// own, kill it with SIGKILL and start it again, without downloading a
// server binary.
//
//	nats-server-test -p 4222 -sd /tmp/data [--sync-always]
//	nats-server-test -p 4222 -sd /tmp/n1 -n n1 --cluster_name c --cluster 127.0.0.1:6222 \
//	    --routes nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224
//
// It prints "ready <client url>" on stdout once it accepts connections, and
// shuts down cleanly on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	var (
		host, storeDir, name, clusterName, clusterListen, routes string
		port                                                     int
		syncAlways, js                                           bool
		maxPayload, maxStore                                     int64
	)
	fs := flag.NewFlagSet("nats-server-test", flag.ExitOnError)
	fs.StringVar(&host, "a", "127.0.0.1", "client listen host")
	fs.IntVar(&port, "p", 4222, "client port (-1: a random port)")
	fs.StringVar(&storeDir, "sd", "", "JetStream store directory (required)")
	fs.BoolVar(&js, "js", true, "enable JetStream")
	fs.BoolVar(&syncAlways, "sync-always", false, "fsync every JetStream write before acknowledging it")
	fs.StringVar(&name, "n", "", "server name (required in a cluster)")
	fs.StringVar(&clusterName, "cluster_name", "", "cluster name")
	fs.StringVar(&clusterListen, "cluster", "", "cluster listen address host:port (enables clustering)")
	fs.StringVar(&routes, "routes", "", "comma-separated route URLs to the cluster's servers")
	fs.Int64Var(&maxPayload, "max-payload", 0, "largest message the server accepts, bytes (0: the server's default, 1 MiB)")
	fs.Int64Var(&maxStore, "js-max-store", 0, "JetStream file storage limit, bytes (0: unlimited)")
	_ = fs.Parse(os.Args[1:])
	if storeDir == "" {
		fmt.Fprintln(os.Stderr, "nats-server-test: -sd is required")
		os.Exit(2)
	}

	opts := &server.Options{
		ServerName:             name,
		Host:                   host,
		Port:                   port,
		JetStream:              js,
		StoreDir:               storeDir,
		SyncAlways:             syncAlways,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	if maxPayload > 0 {
		opts.MaxPayload = int32(maxPayload)
	}
	if maxStore > 0 {
		opts.JetStreamMaxStore = maxStore
	}
	if clusterListen != "" {
		h, p, err := net.SplitHostPort(clusterListen)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nats-server-test: --cluster %q: %v\n", clusterListen, err)
			os.Exit(2)
		}
		cp, err := strconv.Atoi(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nats-server-test: --cluster port %q: %v\n", p, err)
			os.Exit(2)
		}
		opts.Cluster = server.ClusterOpts{Name: clusterName, Host: h, Port: cp}
		if routes != "" {
			opts.Routes = server.RoutesFromStr(routes)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nats-server-test: %v\n", err)
		os.Exit(1)
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(60 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats-server-test: not ready for connections after 60s")
		os.Exit(1)
	}
	fmt.Printf("ready %s\n", s.ClientURL())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		s.Shutdown()
	}()
	s.WaitForShutdown()
}
