package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/jetflow-io/jetflow/internal/natsauth"
	"github.com/jetflow-io/jetflow/participants/reference"
	"github.com/jetflow-io/jetflow/streams"
)

// composeFile is the part of docker-compose.yml the topology test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image   string          `yaml:"image"`
	Build   any             `yaml:"build"`
	Command []string        `yaml:"command"`
	Volumes []composeVolume `yaml:"volumes"`
	Deploy  struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// composeVolume is a mount in either of compose's syntaxes: the short
// "source:target[:ro]" or the long map.
type composeVolume struct {
	Type, Source, Target string
	Subpath              string
}

func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 {
			return fmt.Errorf("volume %q: want source:target", n.Value)
		}
		v.Source, v.Target = parts[0], parts[1]
		v.Type = "volume"
		if strings.HasPrefix(v.Source, ".") || strings.HasPrefix(v.Source, "/") {
			v.Type = "bind"
		}
		return nil
	}
	var long struct {
		Type, Source, Target string
		Volume               struct {
			Subpath string `yaml:"subpath"`
		}
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	v.Type, v.Source, v.Target, v.Subpath = long.Type, long.Source, long.Target, long.Volume.Subpath
	return nil
}

var (
	realServerOnce sync.Once
	realServer     string
	realServerErr  error
)

// natsServerBinary builds the nats-server of go.mod (the module's own main
// package, the program of the nats image) once per test run.
func natsServerBinary(t *testing.T) string {
	realServerOnce.Do(func() {
		realServer = filepath.Join(filepath.Dir(bin.jetflow), "nats-server")
		if out, err := exec.Command("go", "build", "-o", realServer, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
			realServerErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if realServerErr != nil {
		t.Fatal(realServerErr)
	}
	return realServer
}

// TestComposeTopology runs docker-compose.yml as local processes: the
// keys service's command makes the seeds; three nats-servers (the real
// program of the nats image, built from go.mod's module) run with each
// node's command line and mounts — the generated deploy/nats-server.conf
// and the public keys — and form a cluster that enforces the role
// permissions; the orchestrator service's copies and the participants run
// with their command lines and their own seeds, on R3 streams. Host names
// become loopback ports and container paths the files mounted there; the
// test adds only each node's client address (-a, -p) and a short
// --ack-wait. The order mix runs on it, one orchestrator is
// killed halfway and not restarted, and every order must end as its mix
// says with no effect doubled.
func TestComposeTopology(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	serverVersion := regexp.MustCompile(`(?m)^\s*github.com/nats-io/nats-server/v2 v(\S+)$`).FindSubmatch(gomod)
	if serverVersion == nil {
		t.Fatal("go.mod names no nats-server")
	}

	// What the file must say, before anything runs.
	var nodes, engine []string
	for name, s := range cf.Services {
		switch {
		case s.Image != "":
			if want := "nats:" + string(serverVersion[1]); s.Image != want {
				t.Errorf("service %s runs %s, want %s (go.mod's nats-server)", name, s.Image, want)
			}
			nodes = append(nodes, name)
		case len(s.Command) > 0 && (s.Command[0] == "orchestrator" || s.Command[0] == "participant"):
			engine = append(engine, name)
		}
	}
	slices.Sort(nodes)
	slices.Sort(engine)
	if len(nodes) != 3 {
		t.Fatalf("docker-compose.yml runs nats-servers %v, want a 3-node cluster", nodes)
	}
	keysSvc, ok := cf.Services["keys"]
	if !ok || !slices.Equal(keysSvc.Command, []string{"auth", "keys", "--out", "/keys"}) {
		t.Fatalf("docker-compose.yml: the keys service runs %q, want auth keys --out /keys", keysSvc.Command)
	}
	orch := cf.Services["orchestrator"]
	if orch.Deploy.Replicas < 2 {
		t.Errorf("the orchestrator service runs %d copies, want 2 or more", orch.Deploy.Replicas)
	}
	for _, svc := range reference.Names {
		s, ok := cf.Services[svc]
		if !ok || len(s.Command) < 2 || s.Command[0] != "participant" || s.Command[1] != svc {
			t.Errorf("no service runs participant %s", svc)
		}
	}
	for _, name := range engine {
		cmd := strings.Join(cf.Services[name].Command, " ")
		if !strings.Contains(cmd, "--replicas 3") || !strings.Contains(cmd, "--nkey ") {
			t.Errorf("service %s: %q: want --replicas 3 and its own --nkey", name, cmd)
		}
	}
	if t.Failed() {
		return
	}

	seed := seedFor(t, 41)
	h := &harness{t: t, dir: t.TempDir(), faults: map[string]int{}, replicas: 3, seed: seed}
	h.rng = rand.New(rand.NewSource(seed))
	t.Cleanup(h.close)

	// keys: `jetflow auth keys --out /keys`, the volume a directory here.
	volumes := map[string]string{}
	for v := range cf.Volumes {
		volumes[v] = filepath.Join(h.dir, "volume-"+v)
		if err := os.MkdirAll(volumes[v], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keyDir := volumes["keys"]
	run := func(s composeService) []string {
		args, err := mountArgs(s, root, volumes, nil, h.dir)
		if err != nil {
			t.Fatal(err)
		}
		return args
	}
	if out, err := exec.Command(bin.jetflow, run(keysSvc)...).CombinedOutput(); err != nil {
		t.Fatalf("keys service: %v\n%s", err, out)
	}

	// The nodes: their host names and ports become loopback ports.
	ports := freePorts(t, 2*len(nodes))
	hosts := map[string]string{}
	for i, n := range nodes {
		hosts[n+":4222"] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		hosts[n+":6222"] = fmt.Sprintf("127.0.0.1:%d", ports[len(nodes)+i])
	}
	server := natsServerBinary(t)
	for i, n := range nodes {
		nodeHosts := map[string]string{"0.0.0.0:6222": hosts[n+":6222"]}
		for k, v := range hosts {
			nodeHosts[k] = v
		}
		args, err := mountArgs(cf.Services[n], root, volumes, nodeHosts, h.dir)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "-a", "127.0.0.1", "-p", strconv.Itoa(ports[i]))
		h.urls = append(h.urls, "nats://"+hosts[n+":4222"])
		h.servers = append(h.servers, h.newRole("nats-server", n, server, args, false))
	}
	for _, s := range h.servers {
		s.start()
	}
	nkey, err := nats.NkeyOptionFromSeed(natsauth.SeedFile(keyDir, natsauth.Admin))
	if err != nil {
		t.Fatal(err)
	}
	h.nc, err = nats.Connect(h.url(), nkey, nats.Name("compose test"), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.Admin)),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		t.Fatal(err)
	}
	h.eventually(60*time.Second, "the nodes formed no JetStream cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := h.js.AccountInfo(ctx)
		return err == nil
	})

	// The engine: the orchestrator's copies first (they create the R3
	// topology), then the participants, each on its own seed.
	var orchestrators []*role
	for i := range orch.Deploy.Replicas {
		args, err := mountArgs(orch, root, volumes, hosts, h.dir)
		if err != nil {
			t.Fatal(err)
		}
		r := h.newRole("orchestrator", fmt.Sprintf("orchestrator-%d", i+1), bin.jetflow, append(args, "--log-level", "warn", "--ack-wait", ackWait.String()), true)
		r.start()
		orchestrators = append(orchestrators, r)
	}
	h.eventually(90*time.Second, "the orchestrators did not create the R3 topology", h.clusterHealthy)
	for _, name := range engine {
		if name == "orchestrator" {
			continue
		}
		args, err := mountArgs(cf.Services[name], root, volumes, hosts, h.dir)
		if err != nil {
			t.Fatal(err)
		}
		h.newRole("participant", name, bin.jetflow, append(args, "--log-level", "warn", "--ack-wait", ackWait.String(), "--pickup-delay", "0"), true).start()
	}
	// The orders go once every participant pulls, as a deployment's
	// readiness check would have it. A cluster just formed sometimes takes
	// each stream create's full 30 s request timeout to answer (the
	// stream is there in 2 s, the answer is not), which holds the
	// participants' start (they wait for the orchestrators' buckets) for
	// longer than the test gives the orders after the fault.
	h.eventually(4*time.Minute, "the participants are not pulling commands", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, name := range engine {
			if name == "orchestrator" {
				continue
			}
			c, err := h.js.Consumer(ctx, streams.HistoryStream, streams.ParticipantConsumerPrefix+name)
			if err != nil {
				return false
			}
			if info, err := c.Info(ctx); err != nil || info.NumWaiting == 0 {
				return false
			}
		}
		return true
	})

	orders := mix("cmp-", 120, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := h.drive(ctx, orders, 40*time.Millisecond)
	time.Sleep(time.Duration(1500+h.rng.Intn(1000)) * time.Millisecond)
	victim := orchestrators[h.rng.Intn(len(orchestrators))]
	victim.kill()
	h.fault("kill -9 orchestrator, not restarted", victim.name)
	orders = l.wait(orders)
	h.settleAndCheck(orders, settleBound)
	if c := h.crashes(); len(c) > 0 {
		t.Errorf("processes crashed: %v", c)
	}
}

// mountArgs returns the command line of service s as it runs here: every
// argument that names a path under one of its mounts names the file or
// directory mounted there (a bind from the repository at root, or a named
// volume, or a file of one with subpath, from volumes), and every
// host:port of hosts is replaced by its value. Files mounted side by side
// are copied together into a directory under scratch.
func mountArgs(s composeService, root string, volumes, hosts map[string]string, scratch string) ([]string, error) {
	mounts := map[string]string{}
	for _, v := range s.Volumes {
		var src string
		switch v.Type {
		case "bind":
			src = filepath.Join(root, v.Source)
		case "volume":
			dir, ok := volumes[v.Source]
			if !ok {
				return nil, fmt.Errorf("volume %s is not declared", v.Source)
			}
			src = filepath.Join(dir, v.Subpath)
		default:
			return nil, fmt.Errorf("mount %+v: want a bind or a volume", v)
		}
		mounts[v.Target] = src
	}
	// A file mounted next to a bound configuration (nkeys.conf beside
	// nats-server.conf, which includes it) is found there only if both sit
	// in one directory: copy the mounted files of a directory together.
	// In a copied file, a path under a mounted directory (store_dir:
	// /data/jetstream) names the directory mounted there.
	dirs := map[string]string{}
	dirMounts := map[string]string{}
	for target, src := range mounts {
		if st, err := os.Stat(src); err == nil && st.IsDir() {
			dirMounts[target] = src
		}
	}
	for target, src := range mounts {
		if st, err := os.Stat(src); err == nil && !st.IsDir() {
			dir, ok := dirs[filepath.Dir(target)]
			if !ok {
				var err error
				if dir, err = os.MkdirTemp(scratch, "mount-"); err != nil {
					return nil, err
				}
				dirs[filepath.Dir(target)] = dir
			}
			b, err := os.ReadFile(src)
			if err != nil {
				return nil, err
			}
			for t, d := range dirMounts {
				b = []byte(strings.ReplaceAll(string(b), " "+t+"/", " "+d+"/"))
			}
			dst := filepath.Join(dir, filepath.Base(target))
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				return nil, err
			}
			mounts[target] = dst
		}
	}
	out := make([]string, len(s.Command))
	for i, a := range s.Command {
		for target, src := range mounts {
			if a == target || strings.HasPrefix(a, target+"/") {
				a = src + strings.TrimPrefix(a, target)
			}
		}
		for from, to := range hosts {
			a = strings.ReplaceAll(a, from, to)
		}
		out[i] = a
	}
	return out, nil
}
