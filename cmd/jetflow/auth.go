package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jetflow-io/jetflow/internal/natsauth"
)

// AuthConfigFile is the generated server configuration under deploy/.
const AuthConfigFile = "nats-server.conf"

// runAuth is `jetflow auth config|keys`.
func runAuth(_ context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "config" && args[0] != "keys") {
		return errors.New("usage: jetflow auth config [--out DIR] | jetflow auth keys --out DIR")
	}
	verb := args[0]
	fs := flag.NewFlagSet("auth "+verb, flag.ContinueOnError)
	out := fs.String("out", "deploy", "directory to write to")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	roles := natsauth.Roles(nil)
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
