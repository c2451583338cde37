package main

import (
	"errors"
	"fmt"
	"io"

	"crmsync/solution"
)

// solutionUsage is the help of `crmsync solution`.
const solutionUsage = `Usage:
  crmsync solution build [--out DIR]   zip the Dataverse solution from its source (default DIR build/)

Import the zip in the Power Apps maker portal (Solutions > Import solution) or with
pac solution import --path <zip>; solution/README.md has the details.
`

// solutionCommand runs `crmsync solution build`: it zips the Dataverse solution's
// source (package solution) into an importable file and prints its path.
func solutionCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprint(stderr, solutionUsage)
		if len(args) == 0 {
			return errors.New("solution: no subcommand given")
		}
		return fmt.Errorf("solution: unknown subcommand %q", args[0])
	}
	fs := newFlagSet("solution build", stderr)
	out := fs.String("out", "build", "folder the zip is written to (created if missing)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("solution build: unexpected argument %q", fs.Arg(0))
	}
	path, err := solution.BuildFile(*out)
	if err != nil {
		return fmt.Errorf("solution build: %w", err)
	}
	fmt.Fprintln(stdout, path)
	return nil
}
