package streams

// Subjects of the orchestrators' affinity (core NATS, nothing stored): each
// orchestrator process announces itself on AffinityHello every second and
// receives the wakes of the workflows it owns on AffinityWake + "." + its
// member ID. Only the orchestrator role may publish or subscribe there.
const (
	// AffinityPrefix is the root of the affinity subjects.
	AffinityPrefix = "jetflow.orchestrators"
	// AffinityHello carries a process's member ID, every second while it
	// runs.
	AffinityHello = AffinityPrefix + ".hello"
	// AffinityBye carries the member ID of a process that stops.
	AffinityBye = AffinityPrefix + ".bye"
	// AffinityWake + "." + member ID is where a process receives the wakes
	// other processes pulled for its workflows.
	AffinityWake = AffinityPrefix + ".wake"
)
