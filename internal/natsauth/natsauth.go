// Package natsauth is the one source of truth for who may do what on a
// jetflow NATS server: the roles, the subjects each may publish and
// subscribe to, their inbox prefixes, and the nats-server configuration
// generated from them (deploy/nats-server.conf, `jetflow dev --auth`).
//
// The permissions are enforced by the server itself: a process that holds
// the client credentials cannot write a history event, a command or a
// result, whatever code it runs.
package natsauth

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetflow-io/jetflow/streams"
)

// Role names.
const (
	// Orchestrator runs workflows: it writes histories, timers and dead
	// letters, and creates the topology.
	Orchestrator = "orchestrator"
	// Client publishes orders.
	Client = "client"
	// Carrier is the shipping carrier's side: it sends signal.carrier.>.
	Carrier = "carrier"
	// PaymentGateway is the payment gateway's side: it alone sends
	// signal.payment.settled.<id>.
	PaymentGateway = "payment-gateway"
	// Operator reads everything and acts on workflows only through the
	// operator verbs: it starts workflows and appends operator requests
	// (wf.*.op.>), nothing else.
	Operator = "operator"
	// Admin may do anything, the destructive JetStream API included. No
	// jetflow process runs with it.
	Admin = "admin"
	// Reconcile runs the reconciliation job's steps: the scan step
	// (reads the payment ledger and the histories) and the schedules' fire
	// step (starts workflows).
	Reconcile = "reconcile"
	// participantPrefix + service is the role of a participant service.
	participantPrefix = "participant-"
)

// Participant is the role of participant service svc.
func Participant(svc string) string { return participantPrefix + svc }

// Services are the participant services of the reference application,
// each with a role of its own.
var Services = []string{"payment", "inventory", "shipping", "notification"}

// ReconcileServices are the services the Reconcile role runs: the
// reconciliation's scan (internal/reconcile.ServiceName) and the schedules'
// fire (orchestrator/schedule.ServiceName).
var ReconcileServices = []string{"reconcile", "jetflow-schedule"}

// Rule is one direction of a permission: the subjects allowed, and the
// subjects denied among them (a deny wins).
type Rule struct {
	Allow []string
	Deny  []string
}

// Role is a role and what the server lets it do.
type Role struct {
	// Name is the role's name: orchestrator, participant-payment, ...
	Name string
	// Doc says in one line what the role is for.
	Doc string
	// Publish and Subscribe are its subject permissions.
	Publish, Subscribe Rule
}

// InboxPrefix is the inbox prefix of role: its connections receive replies
// (request answers, publish acks, pull deliveries) on <prefix>.>, which no
// other role may subscribe to.
func InboxPrefix(role string) string {
	return "_INBOX_" + strings.ToUpper(strings.ReplaceAll(role, "-", "_"))
}

// signalOwners maps each signal of the reference application to the role
// that alone may send it.
var signalOwners = map[string]string{
	"carrier":         Carrier,
	"payment.settled": PaymentGateway,
}

// SignalOwner is the role that may send signal name (carrier.picked_up,
// payment.settled), or "" when no role may.
func SignalOwner(name string) string {
	for prefix, role := range signalOwners {
		if name == prefix || strings.HasPrefix(name, prefix+".") {
			return role
		}
	}
	return ""
}

// ownedSignals are the signal subjects a role owns (signalOwners), in a
// stable order: no other role may send them.
func ownedSignals() []string {
	out := make([]string, 0, 2*len(signalOwners))
	for prefix := range signalOwners {
		out = append(out, streams.SignalPrefix+"."+prefix+".>")
	}
	sort.Strings(out)
	return out
}

// JetStream API subjects.
const (
	api    = "$JS.API."
	apiAck = "$JS.ACK."
	kvPub  = "$KV."
	kvPfx  = "KV_"
)

// durables are the durable consumers of jetflow: no role but the owner may
// pull from, update or delete them.
func durables(services []string) []string {
	d := []string{streams.OrchestratorConsumer, streams.IntakeConsumer, streams.SignalsConsumer, streams.ArchiverConsumer, streams.CallbackConsumer}
	for _, s := range append(append([]string{}, services...), ReconcileServices...) {
		d = append(d, streams.ParticipantConsumerPrefix+s)
	}
	return d
}

// destructive is the JetStream API that loses data or takes a consumer
// from its owner: denied to every role but admin.
func destructive(services []string) []string {
	deny := []string{
		api + "STREAM.DELETE.>",
		api + "STREAM.PURGE.>",
		api + "STREAM.MSG.DELETE.>",
		api + "STREAM.RESTORE.>",
		api + "STREAM.SNAPSHOT.>",
		api + "STREAM.PEER.>",
		api + "STREAM.LEADER.>",
		api + "ACCOUNT.PURGE.>",
		api + "SERVER.>",
		api + "META.>",
	}
	for _, d := range durables(services) {
		deny = append(deny, api+"CONSUMER.DELETE.*."+d)
	}
	return deny
}

// othersDurables denies every use of the durable consumers that role does
// not own: creating (updating) them, pulling from them, acking for them.
func othersDurables(services []string, own ...string) []string {
	var deny []string
	for _, d := range durables(services) {
		if contains(own, d) {
			continue
		}
		deny = append(deny,
			api+"CONSUMER.CREATE.*."+d,
			api+"CONSUMER.CREATE.*."+d+".>",
			api+"CONSUMER.DURABLE.CREATE.*."+d,
			api+"CONSUMER.MSG.NEXT.*."+d,
			api+"CONSUMER.PAUSE.*."+d,
			api+"CONSUMER.UNPIN.*."+d,
			apiAck+"*."+d+".>",
		)
	}
	return deny
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func inbox(role string) string { return InboxPrefix(role) + ".>" }

// live maps history subjects and filters (wf.<id>.…) to the subjects they
// are published on (streams.LiveFilter): themselves in a single history
// stream, wfp.<partition>.… in a partitioned one. The permissions follow
// the layout of this process (streams.SetHistoryPartitions).
func live(subjects ...string) []string {
	out := make([]string, len(subjects))
	for i, s := range subjects {
		out[i] = streams.LiveFilter(s)
	}
	return out
}

// layoutInfo is what a role with the info of each history stream
// (perHistory) needs more to find the layout (streams.Discover asks for
// the single stream's info, then, when there is none, the first
// partition's): the other of the two, so that a participant started
// before any history exists retries quietly instead of being refused.
func layoutInfo() []string {
	if streams.HistoryPartitions() == 1 {
		return []string{api + "STREAM.INFO." + streams.HistoryPartitionStream(0)}
	}
	return []string{api + "STREAM.INFO." + streams.HistoryStream}
}

// perHistory gives rules for each stream of the history.
func perHistory(rules func(stream string) []string) []string {
	var out []string
	for _, stream := range streams.HistoryStreams() {
		out = append(out, rules(stream)...)
	}
	return out
}

// ensured lets the orchestrator make and update the streams and buckets
// streams.Ensure makes, by name, and no other: a stream of the account it
// did not make (a participant's ledger, a user's own) it may read the
// info of, not change.
func ensured() []string {
	topo := streams.Topology{HistoryPartitions: len(streams.HistoryStreams())}
	var names []string
	for _, c := range topo.StreamConfigs() {
		names = append(names, c.Name)
	}
	for _, kv := range []jetstream.KeyValueConfig{topo.IdempotencyConfig(), topo.TimersConfig(), topo.AttemptsConfig()} {
		names = append(names, kvPfx+kv.Bucket)
	}
	var out []string
	for _, n := range names {
		out = append(out, api+"STREAM.CREATE."+n, api+"STREAM.UPDATE."+n)
	}
	return out
}

// callbackRules let a party schedule the callbacks of system whose signal
// names match names, in the system's own callbacks stream, and forward
// them as signals when due (sim.System.ForwardCallbacks): the consumer
// that pulls and acknowledges them, nothing else of the stream. The target
// of a schedule is not checked against these (the server does not), but
// it can only be a subject of the same stream, and the forward checks it.
func callbackRules(system, names string) []string {
	stream := streams.CallbacksStream(system)
	return []string{
		streams.CallbackAtSubject(system, "*", names),
		// The callbacks it gives up, with their reason.
		streams.DeadLetterSubject(streams.CallbackOrigin(system)),
		api + "CONSUMER.CREATE." + stream + "." + streams.CallbackConsumer,
		api + "CONSUMER.CREATE." + stream + "." + streams.CallbackConsumer + ".>",
		api + "CONSUMER.MSG.NEXT." + stream + "." + streams.CallbackConsumer,
		apiAck + stream + "." + streams.CallbackConsumer + ".>",
	}
}

// callbacksClosed keeps every role but the calling party from the
// consumers of the callbacks streams. They are work queues, where an
// acknowledgement removes a message: a consumer's flow-control reply
// acknowledges, and a consumer whose filter overlaps the forwarder's
// would keep the forwarder's from being made. The operator reads them
// with message gets (nats stream get).
func callbacksClosed(services []string) []string {
	var deny []string
	for _, svc := range services {
		stream := streams.CallbacksStream(svc)
		deny = append(deny,
			api+"CONSUMER.CREATE."+stream+".*",
			api+"CONSUMER.CREATE."+stream+".*.>",
			api+"CONSUMER.DURABLE.CREATE."+stream+".*",
			api+"CONSUMER.MSG.NEXT."+stream+".*",
			"$JS.FC."+stream+".>",
			apiAck+stream+".>",
		)
	}
	return deny
}

// signalVerdictReads let a role that sends signals wait for their verdict
// (orchestrator.WaitSignalVerdict): the stream names (the history's
// layout), direct gets addressed by subject of a recorded signal, a
// workflow's end and a signal's dead letter, nothing else of the streams.
func signalVerdictReads() []string {
	// The stream names give the history's layout
	// (streams.DiscoverByNames); a stream's information, which lists
	// every workflow's subjects, stays closed.
	return append(append([]string{api + "STREAM.NAMES"}, perHistory(func(stream string) []string {
		return []string{api + "DIRECT.GET." + stream + ".wf.*.signal.*", api + "DIRECT.GET." + stream + ".wf.*.done.*"}
	})...), api+"DIRECT.GET."+streams.DeadLetterStream+"."+streams.DeadLetterSubject(streams.SignalOrigin)+".*")
}

// readAPI is the read-only JetStream API: stream and consumer information,
// direct and message gets, and ephemeral consumers (KV watches, ordered
// consumers) to read with.
var readAPI = []string{
	api + "INFO",
	api + "STREAM.NAMES",
	api + "STREAM.LIST",
	api + "STREAM.INFO.*",
	api + "STREAM.MSG.GET.*",
	api + "DIRECT.GET.>",
	api + "CONSUMER.NAMES.*",
	api + "CONSUMER.LIST.*",
	api + "CONSUMER.INFO.*.*",
	api + "CONSUMER.CREATE.*.*",
	api + "CONSUMER.CREATE.*.*.>",
	api + "CONSUMER.MSG.NEXT.*.*",
	api + "CONSUMER.DELETE.*.*",
	"$JS.FC.>",
}

// Roles returns every role with its permissions, for the participant
// services given (nil: the reference Services).
func Roles(services []string) []Role {
	if services == nil {
		services = Services
	}
	deny := destructive(services)
	// The archiver purges a finished workflow's tree, bounded by the last
	// sequence it read, and its keys in the idempotency and timers
	// buckets, and drops the workflow's end from the index
	// (orchestrator/archive.go): the orchestrator alone may, on those
	// streams alone (its allow list names them).
	var orchDeny []string
	for _, d := range deny {
		if d != api+"STREAM.PURGE.>" && d != api+"STREAM.MSG.DELETE.>" {
			orchDeny = append(orchDeny, d)
		}
	}
	orch := Role{
		Name: Orchestrator,
		Doc:  "runs workflows: writes histories, timers and dead letters; creates the topology",
		Publish: Rule{
			Allow: append(append(append(live(
				"wf.*.start", "wf.*.cmd.>", "wf.*.marker.*", "wf.*.timer.*", "wf.*.fired.*",
				"wf.*.signal.*", "wf.*.done.>", "wf.*.blocked.*", "wf.*.cancel.*",
				// Continue-as-new run pointers, wf.<id>=runs.<N>
				// (streams.RunPointerSubject). A wildcard is a whole token,
				// so "<id>=runs" takes one: wf.*.* is the narrowest form.
				// The only other subjects of three tokens are the starts,
				// wf.<id>.start, which the orchestrator writes anyway.
				"wf.*.*",
				streams.UpdateFilter, streams.UpdateDoneFilter,
				// Children and signals between workflows: the parent's
				// decisions and events, a child's parent-close request.
				streams.ChildFilter, streams.SignalOutFilter, streams.OperatorFilter,
			), perHistory(func(stream string) []string {
				return []string{
					api + "CONSUMER.CREATE." + stream + "." + streams.OrchestratorConsumer,
					api + "CONSUMER.MSG.NEXT." + stream + "." + streams.OrchestratorConsumer,
					apiAck + stream + "." + streams.OrchestratorConsumer + ".>",
					api + "STREAM.PURGE." + stream,
				}
			})...), []string{
				// The signals a workflow sends.
				streams.SignalPrefix + ".>",
				// Answers to queries and updates, in the askers' inboxes.
				inbox(Client), inbox(Operator),
				// Affinity: membership, wakes handed to their workflow's
				// owner, and the owner's receipt in the sender's inbox.
				streams.AffinityPrefix + ".>", inbox(Orchestrator),
				streams.DeadLetterPrefix + ".>",
				kvPub + streams.TimersBucket + ".>",
				api + "INFO",
				api + "STREAM.INFO.*",
				api + "STREAM.NAMES", api + "STREAM.LIST", api + "STREAM.MSG.GET.*",
				api + "DIRECT.GET.>",
				api + "CONSUMER.CREATE." + streams.OrdersStream + "." + streams.IntakeConsumer,
				api + "CONSUMER.CREATE." + streams.OrdersStream + "." + streams.IntakeConsumer + ".>",
				api + "CONSUMER.CREATE." + streams.SignalsStream + "." + streams.SignalsConsumer,
				api + "CONSUMER.CREATE." + streams.SignalsStream + "." + streams.SignalsConsumer + ".>",
				api + "CONSUMER.CREATE." + kvPfx + streams.TimersBucket + ".>",
				api + "CONSUMER.INFO.*.*",
				api + "CONSUMER.MSG.NEXT." + streams.OrdersStream + "." + streams.IntakeConsumer,
				api + "CONSUMER.MSG.NEXT." + streams.SignalsStream + "." + streams.SignalsConsumer,
				api + "CONSUMER.MSG.NEXT." + kvPfx + streams.TimersBucket + ".*",
				api + "CONSUMER.DELETE." + kvPfx + streams.TimersBucket + ".*",
				apiAck + streams.OrdersStream + "." + streams.IntakeConsumer + ".>",
				apiAck + streams.SignalsStream + "." + streams.SignalsConsumer + ".>",
				"$JS.FC." + kvPfx + streams.TimersBucket + ".>",
				// Archival.
				streams.ArchivePrefix + ".>",
				api + "CONSUMER.CREATE." + streams.IndexStream + "." + streams.ArchiverConsumer,
				api + "CONSUMER.CREATE." + streams.IndexStream + "." + streams.ArchiverConsumer + ".>",
				api + "CONSUMER.MSG.NEXT." + streams.IndexStream + "." + streams.ArchiverConsumer,
				apiAck + streams.IndexStream + "." + streams.ArchiverConsumer + ".>",
				api + "STREAM.PURGE." + kvPfx + streams.IdempotencyBucket,
				api + "STREAM.PURGE." + kvPfx + streams.TimersBucket,
				api + "STREAM.MSG.DELETE." + streams.IndexStream,
				// An archived workflow's recorded signals.
				api + "STREAM.MSG.DELETE." + streams.SignalsStream,
			}...), ensured()...),
			// A workflow's SignalExternal may send any signal but those
			// another role alone may send.
			Deny: append(append([]string{}, orchDeny...), ownedSignals()...),
		},
		Subscribe: Rule{Allow: []string{
			inbox(Orchestrator),
			streams.AffinityPrefix + ".>",
			streams.QueryPrefix + ".*", streams.UpdatePrefix + ".*",
			// An update's completion, which the orchestrator that accepted
			// it waits for.
			streams.LiveFilter(streams.UpdateDoneFilter),
		}},
	}
	roles := []Role{orch}
	for _, svc := range services {
		r := Participant(svc)
		ledger := kvPfx + streams.LedgerBucketPrefix + svc
		cons := streams.ParticipantConsumerPrefix + svc
		idem := streams.IdempotencyBucket + "." + svc + ".>"
		roles = append(roles, Role{
			Name: r,
			Doc:  "participant " + svc + ": consumes its own commands, publishes their results, watches step cancellations",
			Publish: Rule{
				Allow: append(append(append(live("wf.*.res.*."+svc+".*"), layoutInfo()...), perHistory(func(stream string) []string {
					return []string{
						api + "STREAM.INFO." + stream,
						api + "DIRECT.GET." + stream + "." + streams.StepCancelFilter,
						// Its own commands' results: the history's result is
						// the command's idempotency record.
						api + "DIRECT.GET." + stream + ".wf.*.res.*." + svc + ".*",
						api + "CONSUMER.CREATE." + stream + "." + cons + "." + streams.CommandFilter(svc),
						api + "CONSUMER.INFO." + stream + "." + cons,
						api + "CONSUMER.MSG.NEXT." + stream + "." + cons,
						apiAck + stream + "." + cons + ".>",
					}
				})...),
					streams.DeadLetterSubject("cmd."+svc),
					kvPub+idem,
					kvPub+streams.AttemptsBucket+"."+svc+".>",
					kvPub+streams.LedgerBucketPrefix+svc+".>",
					api+"INFO",
					api+"STREAM.INFO."+kvPfx+streams.IdempotencyBucket,
					api+"STREAM.INFO."+kvPfx+streams.AttemptsBucket,
					api+"STREAM.INFO."+ledger,
					api+"STREAM.CREATE."+ledger,
					api+"STREAM.UPDATE."+ledger,
					// Its simulated system's scheduled callbacks, read
					// only: the orchestrator makes the stream, the calling
					// party schedules and forwards them.
					api+"STREAM.INFO."+streams.CallbacksStream(svc),
					api+"CONSUMER.INFO."+streams.CallbacksStream(svc)+"."+streams.CallbackConsumer,
					api+"DIRECT.GET."+kvPfx+streams.IdempotencyBucket+"."+kvPub+idem,
					api+"DIRECT.GET."+ledger+"."+kvPub+streams.LedgerBucketPrefix+svc+".>",
				),
				Deny: deny,
			},
			Subscribe: Rule{Allow: []string{inbox(r), streams.LiveFilter(streams.StepCancelFilter)}},
		})
	}
	roles = append(roles, reconcileRole(deny))
	roles = append(roles,
		Role{
			Name: Client,
			Doc:  "publishes orders; queries and updates workflows (jetflow query, jetflow update)",
			Publish: Rule{
				Allow: []string{streams.OrderCreated, streams.QueryPrefix + ".*", streams.UpdatePrefix + ".*"},
				Deny:  deny,
			},
			Subscribe: Rule{Allow: []string{inbox(Client)}},
		},
		Role{
			Name: Carrier,
			Doc:  "the carrier: sends signal.carrier.>, and schedules it in JETFLOW_CALLBACKS_shipping",
			Publish: Rule{
				Allow: append(append([]string{streams.SignalPrefix + ".carrier.>"}, callbackRules("shipping", "carrier.>")...), signalVerdictReads()...),
				Deny:  deny,
			},
			Subscribe: Rule{Allow: []string{inbox(Carrier)}},
		},
		Role{
			Name: PaymentGateway,
			Doc:  "the payment gateway: sends signal.payment.settled.<id>, and schedules it in JETFLOW_CALLBACKS_payment",
			Publish: Rule{
				Allow: append(append([]string{streams.SignalPrefix + ".payment.settled.*"}, callbackRules("payment", "payment.settled")...), signalVerdictReads()...),
				Deny:  deny,
			},
			Subscribe: Rule{Allow: []string{inbox(PaymentGateway)}},
		},
		Role{
			Name:      Operator,
			Doc:       "reads everything (jetflow show, list, ledger, query; nats stream view); acts only through the verbs (jetflow start, cancel, terminate, retry, resolve, resume)",
			Publish:   Rule{Allow: append(append(append([]string{}, readAPI...), live("wf.*.start", streams.OperatorFilter)...), streams.QueryPrefix+".*"), Deny: append(append(append([]string{}, deny...), othersDurables(services)...), callbacksClosed(services)...)},
			Subscribe: Rule{Allow: []string{inbox(Operator), streams.LiveFilter("wf.>"), streams.DeadLetterPrefix + ".>", streams.OrderCreated, streams.SignalPrefix + ".>"}},
		},
		Role{
			Name:      Admin,
			Doc:       "everything, the destructive JetStream API included; no jetflow process uses it",
			Publish:   Rule{Allow: []string{">"}},
			Subscribe: Rule{Allow: []string{">"}},
		},
	)
	return roles
}

// reconcileRole is the role of the reconciliation job: it consumes the
// commands of ReconcileServices alone and publishes their results; it
// reads the payment ledger and the histories (the scan), and starts
// workflows (a schedule's fire starts the scheduled workflow and the
// schedule's next run). It writes no other history event, no command and
// no ledger entry: a refund is a command of the reconciliation workflow,
// run by the payment participant.
func reconcileRole(deny []string) Role {
	ledger := kvPfx + streams.LedgerBucketPrefix + "payment"
	allow := append(append(append(live("wf.*.start"), layoutInfo()...), perHistory(func(stream string) []string {
		return []string{api + "STREAM.INFO." + stream, api + "DIRECT.GET." + stream, api + "DIRECT.GET." + stream + ".>"}
	})...),
		api+"INFO",
		api+"STREAM.INFO."+kvPfx+streams.IdempotencyBucket,
		api+"STREAM.INFO."+kvPfx+streams.AttemptsBucket,
		// Archived histories, read only: the scan's Describe of an order
		// whose history is gone (or never was) looks it up in the archive
		// (streams.History.Archived, a direct get with a request body).
		api+"DIRECT.GET."+streams.ArchiveStream,
		api+"DIRECT.GET."+streams.ArchiveStream+".>",
		// The payment ledger, read with a KV watch.
		api+"STREAM.INFO."+ledger,
		api+"DIRECT.GET."+ledger+".>",
		api+"CONSUMER.CREATE."+ledger,
		api+"CONSUMER.CREATE."+ledger+".>",
		api+"CONSUMER.DELETE."+ledger+".*",
		"$JS.FC."+ledger+".>",
	)
	for _, svc := range ReconcileServices {
		cons := streams.ParticipantConsumerPrefix + svc
		idem := streams.IdempotencyBucket + "." + svc + ".>"
		allow = append(append(append(allow, live("wf.*.res.*."+svc+".*")...),
			streams.DeadLetterSubject("cmd."+svc),
			kvPub+idem,
			kvPub+streams.AttemptsBucket+"."+svc+".>",
			api+"DIRECT.GET."+kvPfx+streams.IdempotencyBucket+"."+kvPub+idem,
		), perHistory(func(stream string) []string {
			return []string{
				api + "CONSUMER.CREATE." + stream + "." + cons + "." + streams.CommandFilter(svc),
				api + "CONSUMER.INFO." + stream + "." + cons,
				api + "CONSUMER.MSG.NEXT." + stream + "." + cons,
				apiAck + stream + "." + cons + ".>",
			}
		})...)
	}
	return Role{
		Name:      Reconcile,
		Doc:       "the reconciliation job: runs the reconcile scan (reads the payment ledger and the histories) and the schedules' fire (starts workflows); consumes those two services' commands alone",
		Publish:   Rule{Allow: allow, Deny: deny},
		Subscribe: Rule{Allow: []string{inbox(Reconcile), streams.LiveFilter(streams.StepCancelFilter)}},
	}
}

// Lookup returns the role named name among Roles(services).
func Lookup(services []string, name string) (Role, error) {
	var names []string
	for _, r := range Roles(services) {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return Role{}, fmt.Errorf("unknown role %q: want one of %s", name, strings.Join(names, ", "))
}

// CallbackRole is the role of the external party that calls back for
// participant service svc (the payment gateway for payment, the carrier for
// shipping), or "" when none does.
func CallbackRole(svc string) string {
	switch svc {
	case "payment":
		return PaymentGateway
	case "shipping":
		return Carrier
	}
	return ""
}
