package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/streams"
)

// AuthConfigFile is the generated server configuration under deploy/.
const AuthConfigFile = "nats-server.conf"

// runAuth is `jetflow auth config|keys`.
func runAuth(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	out := fs.String("out", "deploy", "directory to write to")
	services := fs.String("services", strings.Join(natsauth.Services, ","), "participant services, each with a role of its own (comma-separated)")
	partitions := fs.Int("history-partitions", 1, "the history layout the permissions are for: 1 for the single JETFLOW_HISTORY, K for a history made with --history-partitions K")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "config" && pos[0] != "keys") {
		return errUsage(fs, "want config (the server's permissions) or keys (an nkey seed per role), got %q", pos)
	}
	verb := pos[0]
	if *partitions < 1 || *partitions > streams.MaxHistoryPartitions {
		return fmt.Errorf("--history-partitions %d: want 1 to %d", *partitions, streams.MaxHistoryPartitions)
	}
	streams.SetHistoryPartitions(*partitions)
	var svcs []string
	for _, s := range strings.Split(*services, ",") {
		if err := streams.ValidToken(s); err != nil {
			return fmt.Errorf("--services %q: %w", *services, err)
		}
		svcs = append(svcs, s)
	}
	roles := natsauth.Roles(svcs)
	switch verb {
	case "config":
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		path := filepath.Join(*out, AuthConfigFile)
		if err := os.WriteFile(path, []byte(natsauth.DeployConfig(roles)), 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s (permissions of %d roles; their public nkeys come from nkeys.conf beside it)\n", path, len(roles))
	case "keys":
		keys, err := natsauth.EnsureKeys(*out, roles)
		if err != nil {
			return err
		}
		path := filepath.Join(*out, "nkeys.conf")
		if err := os.WriteFile(path, []byte(natsauth.KeysConfig(keys, roles)), 0o644); err != nil {
			return err
		}
		fmt.Printf("nkey seeds of %d roles in %s (<role>.nk, mode 0600: give each process only its own); public keys in %s\n", len(roles), *out, path)
	}
	return nil
}
