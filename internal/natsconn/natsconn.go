// Package natsconn builds the NATS connection options of the jetflow
// commands in one place: server URL, credentials (creds file, nkey seed,
// user and password, token), TLS, a nats CLI context, and the inbox
// prefix of the connection's role, with the nats CLI's environment
// variables as defaults.
package natsconn

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
)

// Flags are the connection flags every command that connects takes.
type Flags struct {
	// URL is --nats (default $NATS_URL, then the context's, then
	// nats://127.0.0.1:4222).
	URL string
	// Context is --context, a nats CLI context name or a path to its JSON
	// file (default $NATS_CONTEXT).
	Context string
	// Creds is --creds, a user credentials (JWT) file (default $NATS_CREDS).
	Creds string
	// NKey is --nkey, a file holding a user nkey seed (default $NATS_NKEY).
	NKey string
	// TLSCA, TLSCert and TLSKey are --tls-ca, --tls-cert and --tls-key
	// (defaults $NATS_CA, $NATS_CERT, $NATS_KEY).
	TLSCA, TLSCert, TLSKey string
	// InboxPrefix is --inbox-prefix: where the connection receives replies.
	// Default: the context's, else the prefix of the command's role.
	InboxPrefix string
	// User and Password come from $NATS_USER and $NATS_PASSWORD, or the
	// context; a password is never taken on the command line.
	User, Password string
	// Token comes from the context.
	Token string
}

// URLFlags are the names Register gives the server URL flag: --nats and
// the nats CLI's --server and -s. An alias's help starts "the same as --".
var URLFlags = []string{"nats", "server", "s"}

// Register adds the connection flags to fs; getenv supplies their defaults
// (os.Getenv in a command). --server and -s are aliases of --nats, as in
// the nats CLI.
func (f *Flags) Register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.URL, "nats", getenv("NATS_URL"), "NATS server URL (default $NATS_URL, else the context's, else "+nats.DefaultURL+")")
	// The nats CLI's names for the same flag: -s and --server.
	url := fs.Lookup("nats").Value
	fs.Var(url, "server", "the same as --nats (the nats CLI's name)")
	fs.Var(url, "s", "the same as --nats")
	f.RegisterCredentials(fs, getenv)
}

// RegisterCredentials adds every connection flag but --nats, for a command
// that has its own (jetflow bench: no --nats means an embedded server).
// --tlsca, --tlscert and --tlskey are aliases of --tls-ca, --tls-cert and
// --tls-key, as the nats CLI names them.
func (f *Flags) RegisterCredentials(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.Context, "context", getenv("NATS_CONTEXT"), "nats CLI context: a name in ~/.config/nats/context, or a JSON file (default $NATS_CONTEXT)")
	fs.StringVar(&f.Creds, "creds", getenv("NATS_CREDS"), "user credentials file (default $NATS_CREDS)")
	fs.StringVar(&f.NKey, "nkey", getenv("NATS_NKEY"), "user nkey seed file (default $NATS_NKEY)")
	fs.StringVar(&f.TLSCA, "tls-ca", getenv("NATS_CA"), "CA certificate that signed the server's (default $NATS_CA)")
	fs.StringVar(&f.TLSCert, "tls-cert", getenv("NATS_CERT"), "client certificate (default $NATS_CERT)")
	fs.StringVar(&f.TLSKey, "tls-key", getenv("NATS_KEY"), "client certificate's private key (default $NATS_KEY)")
	// The nats CLI's names of the TLS flags.
	for alias, name := range map[string]string{"tlsca": "tls-ca", "tlscert": "tls-cert", "tlskey": "tls-key"} {
		fs.Var(fs.Lookup(name).Value, alias, "the same as --"+name+" (the nats CLI's name)")
	}
	fs.StringVar(&f.InboxPrefix, "inbox-prefix", "", "subject prefix of the connection's reply inboxes (default: the context's, else the command's role's)")
	f.User, f.Password = getenv("NATS_USER"), getenv("NATS_PASSWORD")
}

// Context is a nats CLI context: the fields of
// ~/.config/nats/context/<name>.json that jetflow uses.
type Context struct {
	URL         string `json:"url"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Token       string `json:"token"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

// ContextDir is where the nats CLI keeps its contexts:
// $XDG_CONFIG_HOME/nats/context, else ~/.config/nats/context.
func ContextDir(getenv func(string) string) (string, error) {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats", "context"), nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("nats context directory: %w", err)
		}
		home = h
	}
	return filepath.Join(home, ".config", "nats", "context"), nil
}

// LoadContext reads context name: a name in ContextDir, or the path of a
// .json file.
func LoadContext(name string, getenv func(string) string) (Context, error) {
	path := name
	if !strings.HasSuffix(name, ".json") && !strings.ContainsRune(name, os.PathSeparator) {
		dir, err := ContextDir(getenv)
		if err != nil {
			return Context{}, err
		}
		path = filepath.Join(dir, name+".json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Context{}, fmt.Errorf("--context %q: %w", name, err)
	}
	var c Context
	if err := json.Unmarshal(data, &c); err != nil {
		return Context{}, fmt.Errorf("--context %q: %s: %w", name, path, err)
	}
	return c, nil
}

// Resolve merges the context into the flags: a flag or environment
// variable that is set wins over the context's field.
func (f *Flags) Resolve(getenv func(string) string) (Flags, error) {
	r := *f
	if f.Context != "" {
		c, err := LoadContext(f.Context, getenv)
		if err != nil {
			return Flags{}, err
		}
		for _, p := range []struct {
			dst *string
			v   string
		}{
			{&r.URL, c.URL}, {&r.Creds, c.Creds}, {&r.NKey, c.NKey}, {&r.User, c.User},
			{&r.Password, c.Password}, {&r.Token, c.Token}, {&r.TLSCert, c.Cert},
			{&r.TLSKey, c.Key}, {&r.TLSCA, c.CA}, {&r.InboxPrefix, c.InboxPrefix},
		} {
			if *p.dst == "" {
				*p.dst = p.v
			}
		}
	}
	if r.URL == "" {
		r.URL = nats.DefaultURL
	}
	return r, nil
}

// Options returns the server URL and the nats.go options of the resolved
// flags r (see Resolve). defaultInbox is the inbox prefix of the command's
// role, used unless the flags or the context name one.
func (r Flags) Options(defaultInbox string) (string, []nats.Option, error) {
	var opts []nats.Option
	if r.Creds != "" && r.NKey != "" {
		return "", nil, errors.New("--creds and --nkey: give one of them")
	}
	if r.Creds != "" {
		if _, err := os.Stat(r.Creds); err != nil {
			return "", nil, fmt.Errorf("--creds %s: %w", r.Creds, err)
		}
		opts = append(opts, nats.UserCredentials(r.Creds))
	}
	if r.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(r.NKey)
		if err != nil {
			return "", nil, fmt.Errorf("--nkey %s: %w", r.NKey, err)
		}
		opts = append(opts, o)
	}
	if r.User != "" {
		opts = append(opts, nats.UserInfo(r.User, r.Password))
	}
	if r.Token != "" {
		opts = append(opts, nats.Token(r.Token))
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		return "", nil, fmt.Errorf("--tls-cert %q and --tls-key %q: give both or neither", r.TLSCert, r.TLSKey)
	}
	if r.TLSCert != "" {
		opts = append(opts, nats.ClientCert(r.TLSCert, r.TLSKey))
	}
	if r.TLSCA != "" {
		opts = append(opts, nats.RootCAs(r.TLSCA))
	}
	inbox := r.InboxPrefix
	if inbox == "" {
		inbox = defaultInbox
	}
	if inbox != "" {
		if strings.ContainsAny(inbox, "*> \t") || strings.HasSuffix(inbox, ".") {
			return "", nil, fmt.Errorf("--inbox-prefix %q: want a subject without wildcards, not ending with '.'", inbox)
		}
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	return r.URL, opts, nil
}
