package workflowtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/jetflow-io/jetflow/orchestrator/workflow"
	"github.com/jetflow-io/jetflow/orchestrator/workflowtest"
	"github.com/jetflow-io/jetflow/participants"
	"github.com/jetflow-io/jetflow/schema"
)

// ---- dsl ----
//
// Temporal's dsl sample: a workflow that interprets a small language of
// activity, sequence and parallel statements over named variables. The
// document is JSON here (the sample reads YAML).

// DSLWorkflow is the interpreted program.
type DSLWorkflow struct {
	Variables map[string]string `json:"variables" msgpack:"variables"`
	Root      DSLStatement      `json:"root" msgpack:"root"`
}

// DSLStatement is one of an activity, a sequence or a parallel.
type DSLStatement struct {
	Activity *DSLActivity  `json:"activity,omitempty" msgpack:"activity,omitempty"`
	Sequence *DSLSequence  `json:"sequence,omitempty" msgpack:"sequence,omitempty"`
	Parallel *DSLParallels `json:"parallel,omitempty" msgpack:"parallel,omitempty"`
}

// DSLActivity runs activity Name with the values of the variables
// Arguments and stores its result in variable Result.
type DSLActivity struct {
	Name      string   `json:"name" msgpack:"name"`
	Arguments []string `json:"arguments" msgpack:"arguments"`
	Result    string   `json:"result" msgpack:"result"`
}

// DSLSequence runs its elements one after the other.
type DSLSequence struct {
	Elements []DSLStatement `json:"elements" msgpack:"elements"`
}

// DSLParallels runs its branches at once; the first failure cancels the
// others.
type DSLParallels struct {
	Branches []DSLStatement `json:"branches" msgpack:"branches"`
}

// SimpleDSLWorkflow runs the program and returns the variables it ended
// with.
func SimpleDSLWorkflow(ctx workflow.Context, dsl DSLWorkflow) (map[string]string, error) {
	bindings := map[string]string{}
	for k, v := range dsl.Variables {
		bindings[k] = v
	}
	if err := dsl.Root.execute(ctx, bindings); err != nil {
		return nil, err
	}
	return bindings, nil
}

func (s DSLStatement) execute(ctx workflow.Context, bindings map[string]string) error {
	switch {
	case s.Activity != nil:
		args := make([]string, len(s.Activity.Arguments))
		for i, a := range s.Activity.Arguments {
			args[i] = bindings[a]
		}
		out, err := workflow.Execute[string](ctx, workflow.Activity{Service: "dsl", Action: s.Activity.Name}, args)
		if err != nil {
			return err
		}
		if s.Activity.Result != "" {
			bindings[s.Activity.Result] = out
		}
	case s.Sequence != nil:
		for _, e := range s.Sequence.Elements {
			if err := e.execute(ctx, bindings); err != nil {
				return err
			}
		}
	case s.Parallel != nil:
		cctx, cancel := workflow.WithCancel(ctx)
		defer cancel()
		futures := make([]workflow.Future[struct{}], len(s.Parallel.Branches))
		for i, b := range s.Parallel.Branches {
			f, set := workflow.NewFuture[struct{}](cctx)
			futures[i] = f
			workflow.Go(cctx, func(ctx workflow.Context) {
				set.Set(struct{}{}, b.execute(ctx, bindings))
			})
		}
		for _, f := range futures {
			if _, err := f.Get(ctx); err != nil {
				cancel() // the first failure cancels the other branches
				return err
			}
		}
	default:
		return errors.New("dsl: a statement needs activity, sequence or parallel")
	}
	return nil
}

// The two programs of the sample, as JSON.
const (
	dslSequence = `{
	  "variables": {"arg1": "value1", "arg2": "value2"},
	  "root": {"sequence": {"elements": [
	    {"activity": {"name": "SampleActivity1", "arguments": ["arg1"], "result": "result1"}},
	    {"activity": {"name": "SampleActivity2", "arguments": ["result1"], "result": "result2"}},
	    {"activity": {"name": "SampleActivity3", "arguments": ["arg2", "result2"], "result": "result3"}}
	  ]}}}`
	dslParallel = `{
	  "variables": {"arg1": "value1", "arg2": "value2", "arg3": "value3"},
	  "root": {"sequence": {"elements": [
	    {"activity": {"name": "SampleActivity1", "arguments": ["arg1"], "result": "result1"}},
	    {"parallel": {"branches": [
	      {"sequence": {"elements": [
	        {"activity": {"name": "SampleActivity2", "arguments": ["result1"], "result": "result2"}},
	        {"activity": {"name": "SampleActivity3", "arguments": ["arg2", "result2"], "result": "result3"}}
	      ]}},
	      {"sequence": {"elements": [
	        {"activity": {"name": "SampleActivity4", "arguments": ["result1"], "result": "result4"}},
	        {"activity": {"name": "SampleActivity5", "arguments": ["arg3", "result4"], "result": "result5"}}
	      ]}}
	    ]}},
	    {"activity": {"name": "SampleActivity1", "arguments": ["result3", "result5"], "result": "result6"}}
	  ]}}}`
)

func TestSampleTemporalDSL(t *testing.T) {
	for _, tc := range []struct {
		name, program string
		// calls are the activities with their arguments, in the order
		// the program fixes (a parallel's branches are sorted).
		calls []string
		want  map[string]string
	}{
		{"sequence", dslSequence,
			[]string{"SampleActivity1(value1)", "SampleActivity2(Result_SampleActivity1)", "SampleActivity3(value2,Result_SampleActivity2)"},
			map[string]string{"arg1": "value1", "arg2": "value2", "result1": "Result_SampleActivity1", "result2": "Result_SampleActivity2", "result3": "Result_SampleActivity3"}},
		{"parallel", dslParallel,
			[]string{"SampleActivity1(value1)",
				"[SampleActivity2(Result_SampleActivity1) SampleActivity3(value2,Result_SampleActivity2) SampleActivity4(Result_SampleActivity1) SampleActivity5(value3,Result_SampleActivity4)]",
				"SampleActivity1(Result_SampleActivity3,Result_SampleActivity5)"},
			map[string]string{"arg1": "value1", "arg2": "value2", "arg3": "value3",
				"result1": "Result_SampleActivity1", "result2": "Result_SampleActivity2", "result3": "Result_SampleActivity3",
				"result4": "Result_SampleActivity4", "result5": "Result_SampleActivity5", "result6": "Result_SampleActivity1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var program DSLWorkflow
			if err := json.Unmarshal([]byte(tc.program), &program); err != nil {
				t.Fatal(err)
			}
			env := workflowtest.New(t)
			workflow.Register(env.Registry(), "dsl", SimpleDSLWorkflow)
			var log callLog
			for i := 1; i <= 5; i++ {
				name := "SampleActivity" + string(rune('0'+i))
				env.Stub(workflow.Activity{Service: "dsl", Action: name}, func(_ context.Context, cmd *participants.Command) (any, error) {
					var args []string
					if err := cmd.Decode(&args); err != nil {
						return nil, participants.NonRetryable("bad_input", err)
					}
					log.add(name + "(" + strings.Join(args, ",") + ")")
					return "Result_" + name, nil
				})
			}
			env.Run()
			env.Start("dsl", "dsl-1", program)
			if d := env.Wait("dsl-1"); d.Status != schema.StatusCompleted {
				t.Fatalf("%s (%s)", d.Status, d.Error)
			}
			var got map[string]string
			if err := env.Output("dsl-1", &got); err != nil {
				t.Fatal(err)
			}
			if !sameStrings(got, tc.want) {
				t.Fatalf("variables %v: want %v", got, tc.want)
			}
			calls := strings.Split(log.String(), " ")
			if tc.name == "parallel" && len(calls) == 6 {
				mid := append([]string(nil), calls[1:5]...)
				sort.Strings(mid)
				calls = []string{calls[0], "[" + strings.Join(mid, " ") + "]", calls[5]}
			}
			if strings.Join(calls, " ") != strings.Join(tc.calls, " ") {
				t.Fatalf("calls %v: want %v", calls, tc.calls)
			}
		})
	}
}

func sameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
