// Command crmsync is the whole service in one binary: `serve` runs the webhook
// gateway, the reconciliation engine and the GraphQL API; the other commands mint
// tokens and run the embedded store on its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `crmsync keeps Dynamics 365 / Dataverse and the email-marketing suite in step.

Usage:
  crmsync serve                       run the service (embedded store and Redis when nothing is configured)
  crmsync serve --demo                the same, plus the Dataverse emulator and a seeded demo tenant; prints curl lines that show the loop
  crmsync token --tenant T --role R   mint a JWT signed with the secret serve uses
  crmsync store-server --addr A       run the embedded MongoDB-compatible server on its own
  crmsync dataverse-emulator --addr A run an in-memory Dataverse (Web API + token endpoint); -h shows curl examples
  crmsync loadgen --token T           post realistic webhooks at a running instance; print throughput and the ledger
  crmsync migrate [--status]          indexes, data migrations and one retention pass (serve migrates at start too); --status only reports
  crmsync solution build [--out DIR]  zip the Dataverse solution for import (default DIR build/)
  crmsync register --connection ID    register crmsync's webhook and steps in the connection's Dataverse [--dry-run] [--remove]

Operator commands, against a running instance (--url/--token or CRMSYNC_URL/CRMSYNC_TOKEN):
  crmsync status                      connections, groups and recent failed sync events
  crmsync sync-list <listId>          sync a marketing list and follow its run [--dry-run: list the changes only]
  crmsync replay                      re-queue sync events [--status S, default FAILED] [--record ID]
  crmsync import <groupId> <file.csv> upsert the CSV's rows (header: email, language, subscriptionState, other fields)

Configuration is read from the environment; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "crmsync:", err)
		}
		os.Exit(2)
	}
}

// run dispatches to a command; it is main without the process, so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCommand(ctx, rest, getenv, stdout, stderr)
	case "token":
		return tokenCommand(rest, getenv, stdout, stderr)
	case "store-server":
		return storeServerCommand(ctx, rest, getenv, stdout, stderr)
	case "dataverse-emulator":
		return emulatorCommand(ctx, rest, getenv, stdout, stderr)
	case "loadgen":
		return loadgenCommand(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return migrateCommand(ctx, rest, getenv, stderr)
	case "solution":
		return solutionCommand(rest, stdout, stderr)
	case "register":
		return registerCommand(ctx, rest, getenv, stdout, stderr)
	case "status":
		return statusCommand(ctx, rest, getenv, stdout, stderr)
	case "sync-list":
		return syncListCommand(ctx, rest, getenv, stdout, stderr)
	case "replay":
		return replayCommand(ctx, rest, getenv, stdout, stderr)
	case "import":
		return importCommand(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("crmsync "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
