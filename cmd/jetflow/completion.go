package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/jetflow-io/jetflow/participants/reference"
)

// runCompletion is `jetflow completion bash|zsh`: a script that completes
// the commands, each command's own flags and the positional arguments that
// take a fixed set of values.
func runCompletion(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("completion", flag.ContinueOnError)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage(fs, "want a shell: bash or zsh, got %q", pos)
	}
	switch pos[0] {
	case "bash":
		writeBash(os.Stdout, completionSpecs())
	case "zsh":
		writeZsh(os.Stdout, completionSpecs())
	default:
		return usageError{fmt.Sprintf("completion %q: want bash or zsh", pos[0])}
	}
	return nil
}

// completionSpec is what a shell completes for one command.
type completionSpec struct {
	name, help string
	flags      []completionFlag
	// values are the words its positional arguments take (nil: any).
	values []string
}

type completionFlag struct {
	name, help string
	// takesValue: the flag is followed by its value (not a bool flag).
	takesValue bool
}

// dash is the flag as typed: --name, or -s for a one-letter name.
func (f completionFlag) dash() string { return dashed(f.name) }

// completionValues are the values of the commands' positional arguments
// that take a fixed set.
func completionValues(name string) []string {
	switch name {
	case "participant":
		return reference.Names
	case "ledger":
		return systems
	case "auth":
		return []string{"config", "keys"}
	case "completion":
		return []string{"bash", "zsh"}
	case "help":
		return commandNames()
	}
	return nil
}

func completionSpecs() []completionSpec {
	var specs []completionSpec
	for _, c := range commands {
		s := completionSpec{name: c.name, help: c.help, values: completionValues(c.name)}
		if fs := describe(c); fs != nil {
			fs.VisitAll(func(f *flag.Flag) {
				_, help := flag.UnquoteUsage(f)
				b, ok := f.Value.(interface{ IsBoolFlag() bool })
				s.flags = append(s.flags, completionFlag{name: f.Name, help: help, takesValue: !(ok && b.IsBoolFlag())})
			})
		}
		specs = append(specs, s)
	}
	return specs
}

func writeBash(w io.Writer, specs []completionSpec) {
	var names []string
	for _, s := range specs {
		names = append(names, s.name)
	}
	fmt.Fprintln(w, "# bash completion of jetflow: source <(jetflow completion bash)")
	fmt.Fprintln(w, "_jetflow() {")
	fmt.Fprintln(w, "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}")
	fmt.Fprintln(w, "\tif [[ $COMP_CWORD -eq 1 ]]; then")
	fmt.Fprintf(w, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(names, " "))
	fmt.Fprintln(w, "\t\treturn")
	fmt.Fprintln(w, "\tfi")
	fmt.Fprintln(w, "\tlocal flags='' valued='' values=''")
	fmt.Fprintln(w, "\tcase ${COMP_WORDS[1]} in")
	for _, s := range specs {
		var flags, valued []string
		for _, f := range s.flags {
			flags = append(flags, f.dash())
			if f.takesValue {
				valued = append(valued, f.dash())
			}
		}
		fmt.Fprintf(w, "\t%s) flags=%q valued=%q values=%q ;;\n", s.name, strings.Join(flags, " "), strings.Join(valued, " "), strings.Join(s.values, " "))
	}
	fmt.Fprintln(w, "\tesac")
	// After a flag that takes a value, complete nothing of ours: the shell
	// offers file names (-o default).
	fmt.Fprintln(w, "\tif [[ \" $valued \" == *\" $prev \"* ]]; then COMPREPLY=(); return; fi")
	fmt.Fprintln(w, "\tif [[ $cur == -* ]]; then")
	fmt.Fprintln(w, "\t\tCOMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))")
	fmt.Fprintln(w, "\telse")
	fmt.Fprintln(w, "\t\tCOMPREPLY=($(compgen -W \"$values\" -- \"$cur\"))")
	fmt.Fprintln(w, "\tfi")
	fmt.Fprintln(w, "}")
	fmt.Fprintln(w, "complete -o default -F _jetflow jetflow")
}

// zshWord is s as a single-quoted zsh word.
func zshWord(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// zshHelp escapes what _arguments reads as syntax in a description.
func zshHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

func writeZsh(w io.Writer, specs []completionSpec) {
	fmt.Fprintln(w, "#compdef jetflow")
	fmt.Fprintln(w, "# zsh completion of jetflow: source <(jetflow completion zsh), or save it as _jetflow in a directory of $fpath")
	fmt.Fprintln(w, "_jetflow() {")
	fmt.Fprintln(w, "\tif (( CURRENT == 2 )); then")
	fmt.Fprintln(w, "\t\tlocal -a commands")
	fmt.Fprintln(w, "\t\tcommands=(")
	for _, s := range specs {
		fmt.Fprintf(w, "\t\t\t%s\n", zshWord(s.name+":"+s.help))
	}
	fmt.Fprintln(w, "\t\t)")
	fmt.Fprintln(w, "\t\t_describe -t commands 'jetflow command' commands")
	fmt.Fprintln(w, "\t\treturn")
	fmt.Fprintln(w, "\tfi")
	fmt.Fprintln(w, "\tshift words")
	fmt.Fprintln(w, "\t(( CURRENT-- ))")
	fmt.Fprintln(w, "\tcase ${words[1]} in")
	for _, s := range specs {
		var args []string
		for _, f := range s.flags {
			spec := f.dash() + "[" + zshHelp(f.help) + "]"
			if f.takesValue {
				spec += ":" + f.name + ":_files"
			}
			args = append(args, zshWord(spec))
		}
		sort.Strings(args)
		if len(s.values) > 0 {
			args = append(args, zshWord("*: :("+strings.Join(s.values, " ")+")"))
		} else {
			args = append(args, zshWord("*: :_files"))
		}
		fmt.Fprintf(w, "\t%s)\n\t\t_arguments \\\n\t\t\t%s\n\t\t;;\n", s.name, strings.Join(args, " \\\n\t\t\t"))
	}
	fmt.Fprintln(w, "\tesac")
	fmt.Fprintln(w, "}")
	fmt.Fprintln(w, `if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _jetflow "$@"; else compdef _jetflow jetflow; fi`)
}
