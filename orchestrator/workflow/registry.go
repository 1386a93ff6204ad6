package workflow

import (
	"fmt"
	"sort"

	"github.com/jetflow-io/jetflow/schema"
)

// Func is a workflow function with its input and output erased to msgpack.
// Register builds one from a typed function.
type Func func(ctx Context, input schema.Raw) (any, error)

// Registry maps workflow type names to functions. The name is a wire
// contract: it is recorded in every history the workflow starts.
type Registry struct {
	fns map[string]Func
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fns: map[string]Func{}} }

// Register adds fn under name. It panics if the name is taken, as
// registering twice is a programming error.
func Register[In, Out any](r *Registry, name string, fn func(ctx Context, in In) (Out, error)) {
	if _, dup := r.fns[name]; dup {
		panic(fmt.Sprintf("workflow: %q registered twice", name))
	}
	r.fns[name] = func(ctx Context, raw schema.Raw) (any, error) {
		var in In
		if err := schema.DecodeRaw(raw, &in); err != nil {
			return nil, fmt.Errorf("decode workflow input: %w", err)
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		enc, err := schema.EncodeRaw(out)
		if err != nil {
			return nil, fmt.Errorf("encode workflow output: %w", err)
		}
		return enc, nil
	}
}

// Lookup returns the function registered under name.
func (r *Registry) Lookup(name string) (Func, bool) {
	fn, ok := r.fns[name]
	return fn, ok
}

// Names lists the registered workflow types.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.fns))
	for n := range r.fns {
		out = append(out, n)
	}
	sort.Sort(sort.StringSlice(out))
	return out
}
